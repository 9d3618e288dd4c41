"""Detection through the entry points: a detector trained by train.py and evaluated by evaluate.py, the model/task
refusal, and scoring a COCO results file against a dataset (no model runs): on synthetic_sod everywhere, on the real
COCO128 copy where there is one (the `coco128` fixture)."""

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from edgecomp.config import build
from edgecomp.data.detection.yolo import read_yolo
from edgecomp.evaluate.coco_metrics import METRIC_KEYS, ground_truth_as_predictions
from edgecomp.evaluate.record import REQUIRED_FIELDS
from tests.conftest import compose_config, read_jsonl, run_cli


def score(tmp_path, coco128, predictions, *overrides):
    run_cli(
        "evaluate.py",
        "task=detection",
        "dataset=coco128",
        f"dataset.root={coco128}",
        "dataset.split=val",
        f"predictions={predictions}",
        f"paths.results={tmp_path}",
        "logger=none",
        *overrides,
    )
    return read_jsonl(tmp_path / "records.jsonl")[-1]


def test_the_ground_truth_as_predictions_scores_map_1(tmp_path, coco128):
    index = read_yolo(coco128, "val2017")
    predictions = tmp_path / "gt.json"
    predictions.write_text(json.dumps(ground_truth_as_predictions(index)))
    record = score(tmp_path, coco128, predictions)
    assert record["metrics"]["map"] == 1.0 and record["metrics"]["map50"] == 1.0 and record["metrics"]["recall"] == 1.0
    assert record["task"] == "detection" and record["dataset"] == "coco128" and record["model"] is None
    assert (record["images"], record["detections"]) == (128, 898)
    assert record["latency_ms"] is None and record["artifact"] == str(predictions)


def test_metrics_match_pycocotools_run_directly_on_the_same_files(tmp_path, coco128):
    index = read_yolo(coco128, "val2017")
    rng = np.random.default_rng(0)
    detections = []
    for entry in ground_truth_as_predictions(index):
        if rng.random() < 0.2:  # a missed object
            continue
        x, y, w, h = entry["bbox"]
        jitter = rng.normal(0, 0.08, size=4) * [w, h, w, h]
        detections.append(
            {
                **entry,
                "bbox": [x + jitter[0], y + jitter[1], max(1.0, w + jitter[2]), max(1.0, h + jitter[3])],
                "score": float(rng.uniform(0.3, 1.0)),
            }
        )
        if rng.random() < 0.1:  # a false positive of another class nearby
            detections.append({**detections[-1], "category_id": (entry["category_id"] + 1) % 80, "score": 0.5})
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps(detections))
    record = score(tmp_path, coco128, predictions)

    ground_truth = index.write_coco(tmp_path / "gt.json")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ground_truth))
        evaluation = COCOeval(coco, coco.loadRes(str(predictions)), iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    keys = ["map", "map50", "map75", "map_small", "map_medium", "map_large", "ar1", "ar10", "ar100"]
    ours = [record["metrics"][k] for k in keys]
    assert ours == pytest.approx(list(evaluation.stats[:9]), abs=1e-12)
    recall = evaluation.eval["recall"][0, :, 0, 2]  # IoU 0.5, every category, area "all", 100 detections
    assert record["metrics"]["recall"] == pytest.approx(recall[recall > -1].mean(), abs=1e-12)
    assert 0.3 < record["metrics"]["map"] < 0.95  # imperfect detections: neither trivial nor broken


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
    common = ["experiment=smoke_det", f"paths.results={tmp_path}", f"paths.data={data_dir}"]
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


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["dataset=synthetic_sod"],
            "model=mobilenetv3_small_100 is a classifier, but dataset=synthetic_sod is a "
            "detection dataset: pick model=yolov8n, retinanet, fcos or faster_rcnn",
        ),
        (["model=yolov8n"], "model=yolov8n is a detector, but dataset=synthetic_cls is a classification dataset"),
        (  # its second stage runs outside the exported network: ONNX Runtime's outputs are not its detections
            ["experiment=smoke_det", "model=faster_rcnn"],
            "model=faster_rcnn_resnet18 cannot be deployed by device=cpu's runtime (onnxruntime)",
        ),
    ],
)
def test_a_model_that_does_not_fit_the_task_or_runtime_is_refused_before_any_work(tmp_path, overrides, message):
    proc = run_cli("train.py", *overrides, f"paths.results={tmp_path}", f"paths.data={tmp_path / 'data'}", check=False)
    assert proc.returncode == 1 and message in proc.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


def test_the_generated_small_object_set_is_scored_through_its_config(tmp_path):
    settings = [
        "dataset=synthetic_sod",
        f"paths.data={tmp_path / 'data'}",
        "dataset.reader.train_images=2",
        "dataset.reader.val_images=4",
    ]
    cfg = compose_config("evaluate", settings)
    index = build(cfg.dataset.reader)(split=cfg.dataset.splits[cfg.dataset.split])  # what the CLI will read
    predictions = tmp_path / "gt.json"
    predictions.write_text(json.dumps(ground_truth_as_predictions(index)))
    run_cli("evaluate.py", *settings, f"predictions={predictions}", f"paths.results={tmp_path}", "logger=none")
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    assert record["dataset"] == "synthetic_sod" and record["images"] == 4
    assert record["metrics"]["map"] == 1.0 and record["metrics"]["map_small"] == 1.0  # small objects are there
