"""Detection through the entry points' command lines, run in-process: scoring a COCO results file against a dataset
(no model runs) on the real COCO128 copy (the `coco128` fixture) and on synthetic_sod, and the model/task and
model/runtime refusals (tests/e2e/test_cli_detection.py: a detector trained by train.py and evaluated by evaluate.py
as processes)."""

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from edgecomp.config import build
from edgecomp.data.detection.yolo import read_yolo
from edgecomp.evaluate.coco_metrics import ground_truth_as_predictions
from tests.conftest import compose_config, read_jsonl, run_in_process


def score(tmp_path, coco128, predictions, *overrides):
    run_in_process(
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
    proc = run_in_process(
        "train.py", *overrides, f"paths.results={tmp_path}", f"paths.data={tmp_path / 'data'}", check=False
    )
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
    run_in_process("evaluate.py", *settings, f"predictions={predictions}", f"paths.results={tmp_path}", "logger=none")
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    assert record["dataset"] == "synthetic_sod" and record["images"] == 4
    assert record["metrics"]["map"] == 1.0 and record["metrics"]["map_small"] == 1.0  # small objects are there
