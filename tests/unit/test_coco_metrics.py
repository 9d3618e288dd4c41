"""COCO detection metrics: our wrapper against pycocotools run directly, hand-computed cases, ignore regions, edge
cases, and the validation of results files. No mock: every number comes out of the real COCOeval."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import re

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from edgecomp.data.detection import DetectionIndex
from edgecomp.errors import DatasetError
from edgecomp.evaluate.coco_metrics import METRIC_KEYS, coco_metrics, ground_truth_as_predictions, load_predictions

PERSON, CAR, BIKE = 1, 3, 7  # non-contiguous on purpose: category ids are the dataset's own


def make_index(num_images: int = 1, categories: tuple[int, ...] = (PERSON,)) -> DetectionIndex:
    """Images of 640x480 with ids 1..n; no image file is needed to compute metrics."""
    names = {PERSON: "person", CAR: "car", BIKE: "bike"}
    return DetectionIndex(
        images=[
            {"id": i, "file_name": f"/nowhere/{i}.jpg", "width": 640, "height": 480} for i in range(1, num_images + 1)
        ],
        categories=[{"id": c, "name": names[c]} for c in categories],
    )


def mixed_index() -> DetectionIndex:
    """Three images, three categories, boxes in COCO's three size ranges (small < 32^2 <= medium < 96^2 <= large)."""
    index = make_index(3, (PERSON, CAR, BIKE))
    index.add_box(1, PERSON, 10, 10, 20, 20)  # small (400 px^2)
    index.add_box(1, PERSON, 100, 50, 50, 60)  # medium (3000)
    index.add_box(1, CAR, 300, 200, 150, 120)  # large (18000)
    index.add_box(2, CAR, 40, 40, 24, 18)  # small
    index.add_box(2, CAR, 200, 100, 70, 70)  # medium
    index.add_box(2, BIKE, 400, 300, 60, 40)  # medium
    index.add_box(3, PERSON, 50, 60, 200, 300)  # large
    index.add_box(3, BIKE, 300, 20, 16, 16)  # small
    index.add_box(3, BIKE, 350, 200, 110, 110)  # large
    return index


def detection(image_id: int, category_id: int, x: float, y: float, w: float, h: float, score: float) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": [x, y, w, h], "score": score}


def imperfect_detections() -> list[dict]:
    """Shifted boxes, a miss, false positives, a wrong class and varied scores for mixed_index()."""
    return [
        detection(1, PERSON, 12, 11, 20, 20, 0.95),  # small, shifted by (2, 1)
        detection(1, PERSON, 108, 50, 50, 60, 0.60),  # medium, shifted by 8: IoU 0.72
        detection(1, PERSON, 500, 400, 40, 40, 0.90),  # false positive, scored above true ones
        detection(1, CAR, 300, 200, 150, 120, 0.85),  # large, exact
        detection(2, CAR, 40, 40, 24, 18, 0.30),  # small, exact, low score
        # image 2's medium car is missed
        detection(2, BIKE, 410, 305, 60, 40, 0.70),  # medium, shifted by (10, 5)
        detection(2, PERSON, 200, 100, 70, 70, 0.80),  # the missed car's box with the wrong class
        detection(3, PERSON, 50, 60, 200, 300, 0.99),  # large, exact
        detection(3, PERSON, 55, 65, 200, 300, 0.50),  # duplicate of it, lower score
        detection(3, BIKE, 301, 21, 16, 16, 0.40),  # small, shifted by (1, 1)
        detection(3, BIKE, 380, 230, 110, 110, 0.65),  # large, shifted by 30: IoU about 0.48, a false positive
    ]


def run_cocoeval(gt_file, results_file) -> COCOeval:
    """pycocotools exactly as its README runs it, on files."""
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(gt_file))
        results = ground_truth.loadRes(str(results_file))
        evaluation = COCOeval(ground_truth, results, iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


# --- sanity and agreement with pycocotools ---------------------------------------------------------------------


def test_ground_truth_as_predictions_scores_perfectly():
    index = mixed_index()
    metrics = coco_metrics(index, ground_truth_as_predictions(index))
    assert set(metrics) == set(METRIC_KEYS)
    for key in ("map", "map50", "map75", "map_small", "map_medium", "map_large", "ar10", "ar100", "recall"):
        assert metrics[key] == pytest.approx(1.0), key
    # at most one detection per image cannot find the three objects of each image
    assert metrics["ar1"] < 1.0


def test_metrics_equal_pycocotools_run_directly_on_files(tmp_path):
    index = mixed_index()
    gt_file = index.write_coco(tmp_path / "instances.json")
    results_file = tmp_path / "results.json"
    results_file.write_text(json.dumps(imperfect_detections()))

    ours = coco_metrics(index, load_predictions(results_file, index))
    reference = run_cocoeval(gt_file, results_file)

    for position, key in enumerate(METRIC_KEYS[:9]):
        assert ours[key] == pytest.approx(float(reference.stats[position]), abs=1e-12), key
    # eval["recall"] is [IoU threshold, category, area range, max detections]; check the layout we rely on
    assert reference.params.iouThrs[0] == pytest.approx(0.5)
    assert reference.params.areaRngLbl[0] == "all" and reference.params.maxDets[2] == 100
    per_category = reference.eval["recall"][0, :, 0, 2]
    assert ours["recall"] == pytest.approx(float(per_category[per_category > -1].mean()), abs=1e-12)
    # the detections are imperfect enough that agreement means something
    assert 0.2 < ours["map"] < 0.9 and 0.2 < ours["recall"] < 1.0
    assert ours["map50"] > ours["map75"]


def test_index_and_detections_are_not_modified():
    index = mixed_index()
    detections = imperfect_detections()
    index_before, detections_before = copy.deepcopy(index), copy.deepcopy(detections)
    first = coco_metrics(index, detections)
    assert index == index_before and detections == detections_before
    assert coco_metrics(index, detections) == first


# --- hand-computed cases ----------------------------------------------------------------------------------------


def two_boxes_index() -> DetectionIndex:
    index = make_index(1, (PERSON,))
    index.add_box(1, PERSON, 100, 100, 50, 50)
    index.add_box(1, PERSON, 300, 200, 60, 40)
    return index


def test_one_of_two_boxes_found():
    metrics = coco_metrics(two_boxes_index(), [detection(1, PERSON, 100, 100, 50, 50, 0.9)])
    assert metrics["recall"] == pytest.approx(0.5)
    assert metrics["ar100"] == pytest.approx(0.5)
    # precision 1 on COCO's 101 recall points 0.00..0.50, nothing beyond recall 0.5
    assert metrics["map"] == pytest.approx(51 / 101)


def test_duplicate_detection_lowers_precision_not_recall():
    perfect = [detection(1, PERSON, 100, 100, 50, 50, 0.9), detection(1, PERSON, 300, 200, 60, 40, 0.7)]
    duplicate = detection(1, PERSON, 100, 100, 50, 50, 0.8)
    metrics = coco_metrics(two_boxes_index(), [*perfect, duplicate])
    assert metrics["recall"] == pytest.approx(1.0)
    assert metrics["ar100"] == pytest.approx(1.0)
    # ranked TP, FP, TP: precision 1 up to recall 0.5 (51 points), 2/3 on the 50 points above
    assert metrics["map"] == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_recall_is_at_iou_half_only():
    index = make_index(1, (PERSON,))
    index.add_box(1, PERSON, 100, 100, 100, 100)
    # shifted by 10 px: IoU = 90*100 / (110*100) = 0.818, a match at the thresholds 0.50..0.80 (7 of 10)
    metrics = coco_metrics(index, [detection(1, PERSON, 110, 100, 100, 100, 0.9)])
    assert metrics["recall"] == pytest.approx(1.0)
    assert metrics["ar100"] == pytest.approx(0.7)
    assert metrics["map"] == pytest.approx(0.7)
    assert metrics["map50"] == pytest.approx(1.0) and metrics["map75"] == pytest.approx(1.0)
    # shifted by 30 px: IoU = 70/130 = 0.538, a match at 0.50 only
    metrics = coco_metrics(index, [detection(1, PERSON, 130, 100, 100, 100, 0.9)])
    assert metrics["recall"] == pytest.approx(1.0)
    assert metrics["ar100"] == pytest.approx(0.1) and metrics["map"] == pytest.approx(0.1)
    assert metrics["map50"] == pytest.approx(1.0) and metrics["map75"] == 0.0


def test_recall_averages_over_categories_with_ground_truth():
    index = make_index(1, (PERSON, CAR, BIKE))  # BIKE has no ground truth: not averaged in as 0
    index.add_box(1, PERSON, 10, 10, 100, 100)
    index.add_box(1, CAR, 200, 200, 100, 100)
    metrics = coco_metrics(
        index, [detection(1, PERSON, 10, 10, 100, 100, 0.9), detection(1, BIKE, 400, 0, 50, 50, 0.9)]
    )
    assert metrics["recall"] == pytest.approx(0.5)
    assert metrics["map"] == pytest.approx(0.5)


# --- ignore regions (iscrowd=1) ---------------------------------------------------------------------------------


def crowd_index(with_region: bool) -> DetectionIndex:
    index = make_index(2, (PERSON, CAR))
    index.add_box(1, PERSON, 20, 20, 60, 80)
    index.add_box(1, CAR, 300, 100, 120, 90)
    index.add_box(2, CAR, 50, 50, 40, 40)
    if with_region:
        index.ignore_region(1, 400, 300, 200, 150)  # one crowd box per category
        index.ignore_region(2, 300, 0, 300, 200)  # never detected
    return index


def test_detection_inside_ignore_region_is_not_a_false_positive():
    inside_region = detection(1, CAR, 450, 330, 60, 50, 0.95)
    true_positives = [{**box, "score": 0.9} for box in ground_truth_as_predictions(crowd_index(with_region=False))]
    metrics = coco_metrics(crowd_index(with_region=True), [*true_positives, inside_region])
    assert metrics["map"] == pytest.approx(1.0)
    assert metrics["recall"] == pytest.approx(1.0)
    # control: without the region the same detection, ranked above the cars, is a false positive
    assert coco_metrics(crowd_index(with_region=False), [*true_positives, inside_region])["map"] < 0.99


def test_undetected_ignore_region_is_not_a_miss():
    index = crowd_index(with_region=True)
    predictions = ground_truth_as_predictions(index)
    assert len(predictions) == 3  # the four crowd boxes are not objects to detect
    metrics = coco_metrics(index, predictions)
    assert metrics["recall"] == pytest.approx(1.0)
    assert metrics["ar100"] == pytest.approx(1.0)
    assert metrics["map"] == pytest.approx(1.0)


# --- edge cases -------------------------------------------------------------------------------------------------


def test_no_detections_scores_zero_without_crashing():
    metrics = coco_metrics(mixed_index(), [])
    assert set(metrics) == set(METRIC_KEYS)
    for key in METRIC_KEYS:
        assert metrics[key] == 0.0, key


def test_area_range_without_ground_truth_is_nan():
    metrics = coco_metrics(two_boxes_index(), [detection(1, PERSON, 100, 100, 50, 50, 0.9)])  # two medium boxes
    assert math.isnan(metrics["map_small"]) and math.isnan(metrics["map_large"])
    assert metrics["map_medium"] == pytest.approx(51 / 101)
    empty = coco_metrics(two_boxes_index(), [])
    assert math.isnan(empty["map_small"]) and empty["map_medium"] == 0.0


def test_no_ground_truth_at_all_is_nan_everywhere():
    metrics = coco_metrics(make_index(2, (PERSON,)), [detection(1, PERSON, 0, 0, 10, 10, 0.5)])
    assert all(math.isnan(metrics[key]) for key in METRIC_KEYS)


def test_bad_in_memory_detection_raises_before_evaluating():
    with pytest.raises(DatasetError, match=r"detections: entry 1: image_id 42"):
        coco_metrics(mixed_index(), [detection(1, PERSON, 0, 0, 5, 5, 0.5), detection(42, PERSON, 0, 0, 5, 5, 0.5)])


# --- load_predictions -------------------------------------------------------------------------------------------


def test_load_predictions_round_trips(tmp_path):
    path = tmp_path / "results.json"
    written = imperfect_detections()
    path.write_text(json.dumps(written))
    loaded = load_predictions(path, mixed_index())
    assert loaded == written
    assert all(type(entry["image_id"]) is int and type(entry["bbox"][0]) is float for entry in loaded)


VALID = {"image_id": 1, "category_id": PERSON, "bbox": [1, 2, 3, 4], "score": 0.5}


@pytest.mark.parametrize(
    "bad_entry, expected",
    [
        ({k: v for k, v in VALID.items() if k != "score"}, "missing key.*'score'"),
        ({k: v for k, v in VALID.items() if k != "bbox"}, "missing key.*'bbox'"),
        ({**VALID, "bbox": [1, 2, 3]}, r"bbox .* 4 finite numbers"),
        ({**VALID, "bbox": [1, 2, "3", 4]}, r"bbox .* 4 finite numbers"),
        ({**VALID, "bbox": [1, 2, float("nan"), 4]}, r"bbox .* 4 finite numbers"),
        ({**VALID, "bbox": [1, float("inf"), 3, 4]}, r"bbox .* 4 finite numbers"),
        ({**VALID, "bbox": "1 2 3 4"}, r"bbox .* 4 finite numbers"),
        ({**VALID, "bbox": [1, 2, -3, 4]}, "negative width or height"),
        ({**VALID, "bbox": [1, 2, 3, -0.5]}, "negative width or height"),
        ({**VALID, "score": float("nan")}, "score nan is not a finite number"),
        ({**VALID, "score": float("-inf")}, "score -inf is not a finite number"),
        ({**VALID, "score": "high"}, "score 'high' is not a finite number"),
        ({**VALID, "image_id": 99}, "image_id 99 is not an image of the dataset"),
        ({**VALID, "image_id": "1"}, "image_id '1' is not an image of the dataset"),
        (
            {**VALID, "category_id": 2},
            r"category_id 2 is not a category of the dataset \(expected one of \[1, 3, 7\]\)",
        ),
        ([1, 2, 3, 4], "expected an object"),
    ],
)
def test_load_predictions_names_file_and_entry(tmp_path, bad_entry, expected):
    path = tmp_path / "results.json"
    path.write_text(json.dumps([VALID, VALID, bad_entry, VALID]))  # json writes NaN/Infinity, as Python's json reads
    with pytest.raises(DatasetError, match=re.escape(str(path)) + r": entry 2: .*" + expected):
        load_predictions(path, mixed_index())


@pytest.mark.parametrize(
    "content, expected",
    [
        ('[{"image_id": 1,', "not valid JSON"),
        ("", "not valid JSON"),
        (json.dumps(VALID), "expected a JSON list of detections.*got an object"),
        ('"results"', "expected a JSON list of detections.*got a string"),
    ],
)
def test_load_predictions_rejects_files_that_are_not_a_results_list(tmp_path, content, expected):
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(DatasetError, match=re.escape(str(path)) + ".*" + expected):
        load_predictions(path, mixed_index())


def test_load_predictions_missing_file(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(DatasetError, match=re.escape(str(path))):
        load_predictions(path, mixed_index())


# --- size classes judged at another resolution (size_scale) ------------------------------------------------------


def test_size_scale_judges_small_medium_and_large_at_the_input_the_ground_truth_was_rendered_for():
    """A set rendered at 2x its input (synthetic_sod's render_scale 2): a 50 x 50 box of the rendered image is 25 x 25
    input px, small; a 100 x 100 one is 50 x 50, medium. At size_scale 1 (COCO's rule) they are medium and large."""
    index = make_index(1, (PERSON,))
    index.add_box(1, PERSON, 10, 10, 50, 50)
    index.add_box(1, PERSON, 300, 200, 100, 100)
    # the small one found, the medium one missed; a false positive of small size (40 x 40 rendered) ranked first
    found = [detection(1, PERSON, 10, 10, 50, 50, 0.9), detection(1, PERSON, 500, 50, 40, 40, 0.95)]
    at_input = coco_metrics(index, found, size_scale=2.0)
    assert at_input["map_small"] == pytest.approx(0.5)  # precision 1/2 at its one recall point
    assert at_input["map_medium"] == 0.0 and math.isnan(at_input["map_large"])
    rendered = coco_metrics(index, found, size_scale=1.0)
    assert math.isnan(rendered["map_small"])  # 40 x 40 and 50 x 50 are medium in the rendered pixels
    assert rendered["map_medium"] == pytest.approx(0.5) and rendered["map_large"] == 0.0
    assert str(coco_metrics(index, found)) == str(rendered)  # 1, COCO's rule, is the default (str: nan == nan)
    assert at_input["map"] == rendered["map"]  # the "all" range is the same at any scale
    with pytest.raises(ValueError, match="size_scale must be a finite number > 0"):
        coco_metrics(index, found, size_scale=0)
