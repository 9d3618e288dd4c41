"""Every compressor refuses what it cannot do before any work: compress.py stops with one line naming the key, having
generated no data, trained no baseline and written no checkpoint, artifact or record."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import run_in_process

CASES = {
    # a model the compressor cannot deploy: Faster R-CNN's detections need its second stage, outside the file
    "ptq_int8-on-faster-rcnn": (
        ["experiment=smoke_det", "compressor=ptq_int8", "model=faster_rcnn", "device=cpu_torch"],
        "compressor=ptq_int8 cannot quantize model=faster_rcnn_resnet18",
    ),
    "ptq_fp16-on-faster-rcnn": (
        ["experiment=smoke_det", "compressor=ptq_fp16", "model=faster_rcnn", "device=cpu_torch"],
        "compressor=ptq_fp16 cannot quantize model=faster_rcnn_resnet18",
    ),
    # a device this machine cannot run (no GPU here; on a GPU machine PTQ's own refusal of CUDA, tested below)
    "ptq_int8-on-cuda": (["experiment=smoke", "compressor=ptq_int8", "device=cuda"], "cuda"),
    # a board over SSH (refused before it is even reached: nothing listens at this address)
    "ptq_int8-asymmetric-on-tensorrt": (
        ["experiment=smoke", "compressor=ptq_int8", "device=jetson_xavier_nx_remote", "device.host=127.0.0.1"],
        "TensorRT builds INT8 engines from Q/DQ files with signed, symmetric INT8 only",
    ),
    "ptq_int8-latency-chosen-on-a-board": (
        [
            "experiment=smoke",
            "compressor=ptq_int8",
            "compressor.mixed_precision=latency",
            "device=remote",
            "device.host=127.0.0.1",
        ],
        "compressor.mixed_precision=latency on device=remote: it profiles each node with ONNX Runtime on this machine",
    ),  # fmt: skip
    # missing or wrong teacher
    "kd-without-a-teacher": (["experiment=smoke", "compressor=kd"], "compressor=kd needs a teacher"),
    "kd-missing-teacher-checkpoint": (
        ["experiment=smoke_compress", "compressor=kd", "+compressor.teacher_checkpoint=/nowhere/teacher.ckpt"],
        "compressor.teacher_checkpoint=/nowhere/teacher.ckpt does not exist",
    ),
    "scalekd-without-a-teacher": (
        ["experiment=smoke_det", "compressor=scalekd"],
        "compressor=scalekd needs a teacher",
    ),
    "fitnet-across-families": (
        ["experiment=smoke_scalekd", "compressor=fitnet", "teacher=retinanet"],
        "compressor=fitnet distils between detectors of one family",
    ),
    "scalekd-on-a-classifier": (
        ["experiment=smoke", "compressor=scalekd", "teacher=mobilenetv3_large_100"],
        "compressor=scalekd distils a detector",
    ),
    # bad settings
    "prune-sparsity-out-of-range": (
        ["experiment=smoke", "compressor=prune_unstructured", "compressor.sparsity=1.5"],
        "compressor.sparsity=1.5",
    ),
    "fastnas-unreachable-budget": (
        ["experiment=smoke_fastnas", "compressor.flops=20%"],
        "compressor.flops=20%: model=yolov8n cannot be pruned that far",
    ),
    "fastnas-metric-the-task-has-not": (
        ["experiment=smoke_fastnas", "compressor.score_metric=top1"],
        "compressor.score_metric=top1: the detection evaluator reports map",
    ),
    "fastnas-on-densenet": (["experiment=smoke", "compressor=fastnas", "model=densenet169"], "cannot prune"),
    # an mmdet point head (FCOS), which no distillation view reads: refused before the datasets or models are built
    "scalekd-between-mmdet-point-heads": (
        [
            "experiment=smoke_scalekd",
            "model=mmdet",
            "model.arch=fcos_r50_fpn",
            "teacher=mmdet",
            "teacher.arch=fcos_r50_fpn",
        ],  # fmt: skip
        "compressor=scalekd cannot distil model=mmdet_fcos_r50_fpn: its mmdet head FCOSHead is not an AnchorHead",
    ),
}
# Cases that need an optional extra (tests/e2e/test_mmdet.py checks its refusal when it is missing)
NEEDS_EXTRA = {"scalekd-between-mmdet-point-heads": "mmdet"}


def _case(name: str):
    package = NEEDS_EXTRA.get(name)
    missing = package is not None and importlib.util.find_spec(package) is None
    return pytest.param(name, marks=pytest.mark.skipif(missing, reason=f"the {package} extra is not installed"))


@pytest.mark.parametrize("case", [_case(name) for name in sorted(CASES)])
def test_compress_refuses_before_any_work(case, tmp_path):
    overrides, message = CASES[case]
    results, data = tmp_path / "results", tmp_path / "data"
    proc = run_in_process("compress.py", *overrides, f"paths.results={results}", f"paths.data={data}", check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("edgecomp: error:")]
    assert message in error
    assert "Traceback" not in proc.stderr
    assert not data.exists(), "data was generated"
    written = sorted(p.relative_to(results) for p in results.rglob("*") if p.is_file()) if results.exists() else []
    # Hydra's own job log (results/hydra/...) is all there may be: no run, checkpoint, artifact or record
    assert all(path.parts[0] == "hydra" for path in written), written
