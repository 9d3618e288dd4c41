"""MMDetection's detectors behind DetectorAdapter (edgecomp.models.detection.mmdet), an optional extra installed by
`bash scripts/install_mmdet.sh`, through the command line. Without the extra only the refusal runs; the rest is
skipped, saying so (tests/integration/test_mmdet_adapter.py: the adapter in-process, and evaluate.py's metrics of an
mmdet checkpoint against pycocotools on mmdet's own predictions)."""

import importlib.util
import math
import os

import pytest

from tests.conftest import read_jsonl, run_cli

HAS_MMDET = all(importlib.util.find_spec(name) is not None for name in ("mmdet", "mmcv", "mmengine"))
needs_mmdet = pytest.mark.skipif(
    not HAS_MMDET, reason="the MMDetection extra is not installed: bash scripts/install_mmdet.sh"
)
SIZE = 128


def test_without_the_extra_model_mmdet_names_the_install_command(tmp_path, data_dir):
    """Run whether the extra is installed or not: a module on PYTHONPATH that fails to import as an absent package
    does stands in for mmdet."""
    absent = tmp_path / "absent"
    absent.mkdir()
    (absent / "mmdet.py").write_text('raise ModuleNotFoundError("No module named \'mmdet\'", name="mmdet")\n')
    proc = run_cli(
        "train.py",
        "experiment=smoke_det",
        "model=mmdet",
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
        check=False,
        env={"PYTHONPATH": os.pathsep.join(filter(None, [str(absent), os.environ.get("PYTHONPATH")]))},
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("edgecomp: error:")]
    assert "model=mmdet needs the MMDetection extra" in line and "bash scripts/install_mmdet.sh" in line
    assert not (tmp_path / "runs").exists()


@needs_mmdet
@pytest.mark.slow
def test_scalekd_distils_an_mmdet_r50_from_an_r101_with_every_term_finite(tmp_path, data_dir):
    """ScaleKD's smoke run with mmdet's RetinaNet R101 (at 2x the resolution) teaching its R50: one epoch, 96 px."""
    run_cli(
        "compress.py",
        "experiment=smoke_scalekd",
        "model=mmdet",
        "teacher=mmdet",
        "trainer.max_epochs=1",
        "dataset.image_size=96",  # synthetic_sod's smallest
        "logger=none",
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
        timeout=900,
    )
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    assert record["compression"]["teacher"] == "mmdet_retinanet_r101_fpn"
    distill = record["distill"]
    terms = [key for key, value in distill.items() if isinstance(value, dict) and "last" in value]
    assert {"loss_feat", "loss_cls", "loss_bbox", "loss_det"} <= set(terms)
    assert all(math.isfinite(distill[t]["first"]) and math.isfinite(distill[t]["last"]) for t in terms)
    # what is deployed is the student alone, the baseline's architecture
    assert record["params"] == record["baseline"]["params"] and record["flops"] == record["baseline"]["flops"]
    assert distill["deployed_architecture_equal_baseline"]


@needs_mmdet
@pytest.mark.slow
def test_fastnas_prunes_an_mmdet_retinanets_head_through_modelopt(tmp_path, data_dir):
    """ModelOpt traces mmdet's RetinaNet (its head's convolutions searched here, to keep the smoke short)."""
    run_cli(
        "compress.py",
        "experiment=smoke_fastnas",
        "model=mmdet",
        "compressor.search_layers=['detector.bbox_head.*']",
        "compressor.epochs=0",
        "trainer.max_epochs=1",
        "logger=none",
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
        timeout=900,
    )
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    assert record["flops"] < 0.9 * record["baseline"]["flops"] and record["params"] < record["baseline"]["params"]
    pruned = record["fastnas"]["subnet_config"]
    assert pruned and all(name.startswith("detector.bbox_head.") for name in pruned)


@needs_mmdet
@pytest.mark.slow
def test_train_py_deploys_an_mmdet_retinanet_that_ptq_int8_quantizes(tmp_path, data_dir):
    """train.py trains, exports and records an mmdet RetinaNet; compress.py compressor=ptq_int8 from its checkpoint
    writes a QDQ INT8 ONNX file a third of the FP32 one's size, scored with COCO metrics from ONNX Runtime's outputs
    decoded by mmdet."""
    common = [
        "experiment=smoke_det",
        "model=mmdet",
        "logger=none",
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
    ]
    run_cli("train.py", *common, "trainer.max_epochs=1")
    (trained,) = read_jsonl(tmp_path / "records.jsonl")
    assert trained["model"] == "mmdet_retinanet_r50_fpn" and trained["artifact"].endswith(".onnx")
    assert 30e6 < trained["params"] < 40e6  # RetinaNet R50-FPN with a 4-class head: ~36 M
    assert set(trained["metrics"]) >= {"map", "map50", "recall"}
    run_cli("compress.py", *common, "compressor=ptq_int8", f"checkpoint={trained['checkpoint']}", timeout=900)
    quantized = read_jsonl(tmp_path / "records.jsonl")[-1]
    assert quantized["artifact"].endswith(".onnx") and quantized["compressor"] == "ptq_int8"
    assert quantized["runtime"]["precision"] == "int8"
    assert quantized["size_bytes"] <= 0.35 * quantized["baseline"]["size_bytes"]
    assert set(quantized["metrics"]) >= {"map", "map50", "recall"} and quantized["latency_ms"]["images"] == 8
