"""COCO detection metrics, computed by pycocotools' COCOeval (the standard tool the papers' numbers come from).

Nothing here re-implements matching, interpolation or averaging: the ground truth is a DetectionIndex turned into
an in-memory `pycocotools.coco.COCO` object, the detections go through `COCO.loadRes`, and the numbers are read off
`COCOeval.stats` and `COCOeval.eval["recall"]`. This module only validates the input (pycocotools fails on bad
input with bare asserts or, worse, silently ignores it), keeps pycocotools' prints off the console, and names the
numbers.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from edgecomp.data.detection.index import DetectionIndex
from edgecomp.errors import DatasetError

METRIC_KEYS = (
    "map",
    "map50",
    "map75",
    "map_small",
    "map_medium",
    "map_large",
    "ar1",
    "ar10",
    "ar100",
    "recall",
)
"""The keys `coco_metrics` returns; the first nine are COCOeval.stats[0..8] in COCO's order."""

PREDICTION_KEYS = ("image_id", "category_id", "bbox", "score")
"""A COCO bbox results entry: what `load_predictions` requires and what it keeps."""

RECALL_IOU = 0.5
RECALL_MAX_DETECTIONS = 100


def load_predictions(path: str | os.PathLike, index: DetectionIndex) -> list[dict[str, Any]]:
    """Read a COCO results file (a JSON list of {"image_id", "category_id", "bbox": [x, y, w, h], "score"}).

    Every entry is checked before anything is returned, so a bad file is never half evaluated: pycocotools
    would otherwise crash with a bare assert (an unknown image), silently drop the entry (an unknown category)
    or compute garbage (a NaN box or score). The first bad entry raises DatasetError naming the file, the
    entry's 0-based position in the list and what was expected. The entries come back normalised to exactly
    the four keys, with int ids and float coordinates and score (extra keys such as "segmentation" are dropped:
    they would change what loadRes does).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise DatasetError(f"{path}: cannot read the predictions file ({err.strerror or err}).") from err
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); expected a COCO "
            'results file: a JSON list of {"image_id", "category_id", "bbox": [x, y, w, h], "score"}.'
        ) from err
    return validate_predictions(entries, index, source=str(path))


def validate_predictions(entries: Any, index: DetectionIndex, source: str = "detections") -> list[dict[str, Any]]:
    """Check a list of COCO results entries against `index` and return normalised copies (see load_predictions).

    `source` names where the entries came from (a file name) in the error message.
    """
    if not isinstance(entries, list):
        raise DatasetError(
            f"{source}: expected a JSON list of detections (COCO results format), got {_json_type(entries)}."
        )
    image_ids = {image["id"] for image in index.images}
    category_ids = {category["id"] for category in index.categories}
    return [
        _validated_entry(entry, position, image_ids, category_ids, source) for position, entry in enumerate(entries)
    ]


def coco_metrics(index: DetectionIndex, detections: list[dict[str, Any]], size_scale: float = 1.0) -> dict[str, float]:
    """COCO bbox metrics of `detections` against the ground truth in `index`, by pycocotools' COCOeval.

    Returns exactly METRIC_KEYS:
    - `map`, `map50`, `map75`, `map_small`, `map_medium`, `map_large`, `ar1`, `ar10`, `ar100`: COCOeval.stats[0..8]
      in COCO's order (AP@[.50:.95], AP@.50, AP@.75, AP for small / medium / large objects, AR with at most 1, 10,
      100 detections per image), each averaged over the categories that have ground truth;
    - `recall`: the recall at the single IoU threshold 0.5, with at most 100 detections per image, over all object
      sizes, averaged over the categories that have ground truth: the mean of
      `cocoeval.eval["recall"][iou=0.5, :, area="all", maxDets=100]` over its entries other than -1. This is the
      report's "recall" column: every detection counts, whatever its score. It is NOT Ultralytics' recall, which
      is taken at the single confidence that maximises F1 and is therefore lower.

    Where COCO has no ground truth to average over (it writes -1: e.g. `map_small` when the dataset has no small
    objects, or every key when there is no ground truth at all) the value is float("nan"), never -1, so that it
    cannot be mistaken for a score or averaged into one.

    Only the index's images are evaluated (`params.imgIds`), and crowd annotations (iscrowd=1) are ignore regions
    as in COCO. With no detections at all every metric is 0.0 where ground truth exists (pycocotools still does
    the counting: the detections object is built empty, since loadRes refuses an empty list). The detections
    are validated like `load_predictions`' entries (DatasetError on a bad one) and neither they nor the index are
    modified (pycocotools writes into the annotation dicts it is given, so it gets copies).

    `size_scale`: the ground truth's pixels per pixel of the size at which the small / medium / large classes are
    judged. 1 (COCO's rule) judges them in the original image's pixels; a set rendered at r x the input it serves
    (synthetic_sod's `render_scale`) passes r, so that "small" is under 32 x 32 px of that input (COCOeval's area
    ranges multiplied by r^2).
    """
    return evaluation_metrics(coco_evaluation(index, detections, size_scale))


def coco_evaluation(index: DetectionIndex, detections: list[dict[str, Any]], size_scale: float = 1.0) -> COCOeval:
    """The COCOeval of `detections` against `index` after evaluate, accumulate and summarize: what coco_metrics
    reads its numbers from (see there), with the per-image evaluations (`evalImgs`) a bootstrap re-accumulates."""
    if not (math.isfinite(size_scale) and size_scale > 0):
        raise ValueError(f"size_scale must be a finite number > 0, got {size_scale}")
    detections = validate_predictions(detections, index)
    ground_truth = COCO()
    # A COCO file's whole dictionary, as COCO loads it (the stubs type `dataset` as its three lists alone).
    ground_truth.dataset = copy.deepcopy(index.to_coco())  # type: ignore[assignment]
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        if detections:
            results = ground_truth.loadRes(detections)
        else:
            results = _empty_results(ground_truth)
        evaluation = COCOeval(ground_truth, results, iouType="bbox")
        evaluation.params.imgIds = sorted(int(image["id"]) for image in index.images)
        evaluation.params.catIds = sorted(int(category["id"]) for category in index.categories)
        evaluation.params.areaRng = [
            [low * size_scale**2, high * size_scale**2] for low, high in evaluation.params.areaRng
        ]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def evaluation_metrics(evaluation: COCOeval) -> dict[str, float]:
    """METRIC_KEYS of a summarized COCOeval (see coco_metrics)."""
    metrics = {
        key: _nan_if_missing(float(value)) for key, value in zip(METRIC_KEYS[:9], evaluation.stats[:9], strict=True)
    }
    metrics["recall"] = recall_at_iou50(evaluation)
    return metrics


def recall_at_iou50(evaluation: COCOeval) -> float:
    """The report's recall from an accumulated COCOeval: IoU 0.5, all areas, 100 detections per image, averaged
    over the categories with ground truth (leaving out COCO's -1 entries); float("nan") when no category has any."""
    params = evaluation.params
    iou_position = int(np.flatnonzero(np.isclose(params.iouThrs, RECALL_IOU))[0])
    area_position = params.areaRngLbl.index("all")
    max_detections_position = params.maxDets.index(RECALL_MAX_DETECTIONS)
    per_category = evaluation.eval["recall"][iou_position, :, area_position, max_detections_position]
    with_ground_truth = per_category[per_category > -1]
    return float(np.mean(with_ground_truth)) if with_ground_truth.size else float("nan")


def ground_truth_as_predictions(index: DetectionIndex) -> list[dict[str, Any]]:
    """Every non-crowd annotation as a detection with score 1.0: the sanity check that the ground truth, fed back
    through the whole evaluation, scores map 1.0 (crowd regions are ignore regions, not objects to detect)."""
    return [
        {
            "image_id": int(annotation["image_id"]),
            "category_id": int(annotation["category_id"]),
            "bbox": [float(value) for value in annotation["bbox"]],
            "score": 1.0,
        }
        for annotation in index.annotations
        if not annotation.get("iscrowd", 0)
    ]


def _validated_entry(entry: Any, position: int, image_ids: set, category_ids: set, source: str) -> dict[str, Any]:
    def bad(expected: str) -> DatasetError:
        return DatasetError(f"{source}: entry {position}: {expected}.")

    if not isinstance(entry, dict):
        raise bad(f'expected an object {{"image_id", "category_id", "bbox", "score"}}, got {_json_type(entry)}')
    missing = [key for key in PREDICTION_KEYS if key not in entry]
    if missing:
        raise bad(f"missing key(s) {', '.join(repr(key) for key in missing)}; expected {list(PREDICTION_KEYS)}")
    image_id, category_id, bbox, score = (entry[key] for key in PREDICTION_KEYS)
    if not _is_integer(image_id) or image_id not in image_ids:
        raise bad(
            f"image_id {image_id!r} is not an image of the dataset (expected one of its {len(image_ids)} int ids)"
        )
    if not _is_integer(category_id) or category_id not in category_ids:
        raise bad(
            f"category_id {category_id!r} is not a category of the dataset (expected one of {sorted(category_ids)})"
        )
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_finite_number(value) for value in bbox):
        raise bad(f"bbox {bbox!r} is not [x, y, w, h]: expected 4 finite numbers")
    if bbox[2] < 0 or bbox[3] < 0:
        raise bad(f"bbox {list(bbox)!r} has a negative width or height: expected [x, y, w, h] with w >= 0 and h >= 0")
    if not _is_finite_number(score):
        raise bad(f"score {score!r} is not a finite number")
    return {
        "image_id": int(image_id),
        "category_id": int(category_id),
        "bbox": [float(value) for value in bbox],
        "score": float(score),
    }


def _empty_results(ground_truth: COCO) -> COCO:
    """What loadRes would build from an empty list, if it accepted one: the same images, no detections."""
    results = COCO()
    results.dataset = {
        "images": list(ground_truth.dataset["images"]),
        "categories": copy.deepcopy(ground_truth.dataset["categories"]),
        "annotations": [],
    }
    results.createIndex()
    return results


def _nan_if_missing(value: float) -> float:
    """COCO's -1 ("no ground truth to average over") as NaN."""
    return float("nan") if value == -1 else value


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, numbers.Number) else type(value).__name__)
