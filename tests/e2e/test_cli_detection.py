"""Detection through the entry points as processes: a detector trained by train.py and evaluated by evaluate.py (ONNX
Runtime and eager PyTorch), and a malformed predictions file refused in one line
(tests/integration/test_detection_entry_points.py: scoring a results file, and the refusals, in-process)."""

import json
import shutil
from pathlib import Path

import pytest

from edgecomp.evaluate.coco_metrics import METRIC_KEYS
from edgecomp.evaluate.record import REQUIRED_FIELDS
from tests.conftest import read_jsonl, run_cli


def test_a_malformed_predictions_file_names_the_entry(tmp_path, coco128):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 139, "category_id": 0, "bbox": [1, 2, 3], "score": 0.9}]))
    proc = run_cli(
        "evaluate.py",
        "task=detection",
        "dataset=coco128",
        f"dataset.root={coco128}",
        f"predictions={bad}",
        f"paths.results={tmp_path}",
        check=False,
    )
    assert proc.returncode == 1 and f"{bad}: entry 0: bbox" in proc.stderr
    assert not (tmp_path / "records.jsonl").exists()


def test_smoke_det_trains_then_evaluate_reproduces_the_record(tmp_path, data_dir, trained):
    """`experiment=smoke_det` (YOLOv8n on a tiny synthetic_sod) through both entry points: a complete detection
    record, and the evaluation of the saved checkpoint gives the same COCO metrics, params, FLOPs and size."""
    run = trained("smoke_det")  # `python train.py experiment=smoke_det`, once per session (its results shared)
    trained = run.record
    # Evaluated into results of this test's own, given train.py's deployed files (each named by the weights it holds)
    shutil.copytree(run.results / "deployed", tmp_path / "deployed")
    common = ["experiment=smoke_det", f"paths.results={tmp_path}", f"paths.deployed={tmp_path / 'deployed'}",
              f"paths.data={data_dir}"]  # fmt: skip
    assert set(REQUIRED_FIELDS) <= set(trained) and "edgecomp train" in run.stdout
    assert (trained["task"], trained["dataset"], trained["model"]) == ("detection", "synthetic_sod", "yolov8n")
    assert set(trained["metrics"]) == set(METRIC_KEYS)
    assert trained["input_size"] == [3, 128, 128]
    assert 2_500_000 < trained["params"] < 3_500_000  # YOLOv8n: 3.0 M at 4 classes
    assert trained["flops"] > 100 * trained["params"]
    assert trained["latency_ms"]["images"] == 8 and trained["latency_ms"]["median"] > 0
    assert 0 < trained["gzip_bytes"] < trained["size_bytes"]
    # device=cpu deploys the detector's network as an ONNX file run by ONNX Runtime, scored from its outputs
    assert trained["runtime"]["runtime"] == "onnxruntime" and trained["artifact"].endswith(".onnx")
    assert trained["size_bytes"] == Path(trained["artifact"]).stat().st_size and trained["export_time_s"] > 0

    run_cli("evaluate.py", *common, f"checkpoint={trained['checkpoint']}", "logger=none")
    (evaluated,) = read_jsonl(tmp_path / "records.jsonl")
    assert evaluated["metrics"] == trained["metrics"]
    for field in ("params", "flops", "size_bytes", "input_size"):
        assert evaluated[field] == trained[field], field
    # the same weights: the file train.py exported (its copy here, the same name) is reused, not exported again
    assert Path(evaluated["artifact"]) == tmp_path / "deployed" / Path(trained["artifact"]).name
    assert evaluated["export_time_s"] == 0.0

    # The same checkpoint in eager PyTorch scores the same (map within 0.002)
    run_cli("evaluate.py", *common, f"checkpoint={trained['checkpoint']}", "device=cpu_torch", "logger=none")
    eager = read_jsonl(tmp_path / "records.jsonl")[-1]
    assert eager["runtime"]["runtime"] == "torch" and eager["artifact"] == eager["checkpoint"]
    for key, value in trained["metrics"].items():
        assert (value != value and eager["metrics"][key] != eager["metrics"][key]) or eager["metrics"][key] == (
            pytest.approx(value, abs=0.002)
        ), key
