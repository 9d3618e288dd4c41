"""COCO metrics of a detector on its datamodule's evaluation split.

The detector's `predict` (its family's decoding and NMS) runs on the letterboxed S x S images, on the target
device's accelerator and precision; each detection goes back to the original image's pixels and the dataset's
category ids, and pycocotools compares them with the split's full ground truth (edgecomp.evaluate.coco).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from edgecomp.data.detection.letterbox import to_original_boxes
from edgecomp.evaluate.coco import METRIC_KEYS, coco_metrics
from edgecomp.evaluate.evaluator import Evaluator
from edgecomp.evaluate.runtimes.base import Predictor


def coco_detections(model: nn.Module, datamodule, device: torch.device, dtype: torch.dtype) -> list[dict[str, Any]]:
    """The model's detections on the evaluation split as COCO results entries (original pixels, category ids)."""
    model = copy.deepcopy(model).eval().to(device, dtype)
    images_by_id = {image["id"]: image for image in datamodule.eval_index.images}
    category_ids = datamodule.category_ids
    results: list[dict[str, Any]] = []
    with torch.inference_mode():
        for images, targets in tqdm(
            datamodule.eval_dataloader(), desc="detect", unit="batch", disable=None, leave=False
        ):
            for detection, target in zip(model.predict(images.to(device, dtype)), targets, strict=True):
                image = images_by_id[target["image_id"]]
                boxes = to_original_boxes(
                    detection["boxes"].float().cpu(), target["scale"], image["width"], image["height"]
                )
                for (x1, y1, x2, y2), score, label in zip(
                    boxes.tolist(),
                    detection["scores"].float().cpu().tolist(),
                    detection["labels"].tolist(),
                    strict=True,
                ):
                    results.append(
                        {
                            "image_id": target["image_id"],
                            "category_id": category_ids[label],
                            "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "score": score,
                        }
                    )
    return results


class CocoEvaluator(Evaluator):
    """map, map50, map75, map_small, map_medium, map_large, ar1, ar10, ar100, recall (edgecomp.evaluate.coco)."""

    metric_names = METRIC_KEYS

    def __call__(self, model, predictor: Predictor, datamodule, device) -> dict[str, float]:
        detections = coco_detections(model, datamodule, device.torch_device, device.dtype)
        return coco_metrics(datamodule.eval_index, detections)
