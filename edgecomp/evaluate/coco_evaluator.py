"""COCO metrics of a detector on its datamodule's evaluation split.

The deployed network (the predictor the target device's runtime made of the detector: eager PyTorch, or an exported
file run by ONNX Runtime) runs on the letterboxed S x S images, and the adapter's `decode` (its family's decoding
and NMS) turns its outputs into detections; a family whose detections need more than `forward` (Faster R-CNN) runs
its eager `predict` on the device's accelerator and precision instead. Each detection goes back to the original image's pixels and the dataset's
category ids, and pycocotools compares them with the split's full ground truth (edgecomp.evaluate.coco_metrics). With a
bootstrap, `map` and `map_small` get intervals over the images from pycocotools' per-image matches, re-accumulated
for each resample (edgecomp.evaluate.coco_bootstrap: nothing is matched again).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from tqdm.auto import tqdm

from edgecomp.data.detection.letterbox import to_original_boxes
from edgecomp.evaluate.coco_bootstrap import ResampledAP
from edgecomp.evaluate.coco_metrics import METRIC_KEYS, coco_evaluation, coco_metrics, evaluation_metrics
from edgecomp.evaluate.evaluator import Evaluation, Evaluator, bootstrap_ci95, check_resamples
from edgecomp.evaluate.runtimes.runtime import Predictor
from edgecomp.models.detection.adapter import DetectorAdapter


def deployed_detections(
    model: DetectorAdapter, predictor: Predictor, images: torch.Tensor
) -> list[dict[str, torch.Tensor]]:
    """Detections per image from what the deployed network (`predictor`: eager, or an exported file run by its
    runtime) returns for `images`, decoded by the adapter on the CPU in FP32."""
    outputs = predictor.to_tensors(predictor(predictor.prepare(images)))
    return model.decode(model.outputs_from_tensors(outputs))


def coco_detections(
    model: DetectorAdapter, predictor: Predictor | None, datamodule, device: torch.device, dtype: torch.dtype
) -> list[dict[str, Any]]:
    """The model's detections on the evaluation split as COCO results entries (original pixels, category ids).

    A family that decodes its `forward` outputs is scored on what `predictor` runs (the deployed artifact); one that
    does not (Faster R-CNN's second stage runs outside `forward`) on the eager network's `predict` at the device's
    accelerator and precision."""
    if model.decodes_forward_outputs:
        if predictor is None:
            raise ValueError(f"{type(model).__name__}: scoring the deployed network needs its predictor")
        decoder = copy.deepcopy(model).eval().cpu().float()

        def detect(images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
            return deployed_detections(decoder, predictor, images)
    else:
        eager = copy.deepcopy(model).eval().to(device, dtype)

        def detect(images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
            return eager.predict(images.to(device, dtype))

    images_by_id = {image["id"]: image for image in datamodule.eval_index.images}
    category_ids = datamodule.category_ids
    results: list[dict[str, Any]] = []
    with torch.inference_mode():
        for images, targets in tqdm(
            datamodule.eval_dataloader(), desc="detect", unit="batch", disable=None, leave=False
        ):
            for detection, target in zip(detect(images), targets, strict=True):
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
    """map, map50, map75, map_small, map_medium, map_large, ar1, ar10, ar100, recall (edgecomp.evaluate.coco_metrics);
    `evaluate` adds the bootstrap intervals of map and map_small over the images (`bootstrap` resamples, 0: none).
    `size_scale`: the ground truth's pixels per pixel of the size the small / medium / large classes are judged at
    (coco_metrics; 1: COCO's rule, in the original image's pixels)."""

    metric_names = METRIC_KEYS
    BOOTSTRAPPED = {"map": "all", "map_small": "small"}  # metric: COCO area range (at 100 detections per image)

    def __init__(self, bootstrap: int = 0, size_scale: float = 1.0) -> None:
        self.bootstrap = check_resamples(bootstrap)
        self.size_scale = float(size_scale)

    def __call__(self, model, predictor: Predictor, datamodule, device) -> dict[str, float]:
        detections = coco_detections(model, predictor, datamodule, device.torch_device, device.dtype)
        return coco_metrics(datamodule.eval_index, detections, self.size_scale)

    def evaluate(self, model, predictor: Predictor, datamodule, device) -> Evaluation:
        detections = coco_detections(model, predictor, datamodule, device.torch_device, device.dtype)
        return coco_evaluation_with_intervals(datamodule.eval_index, detections, self.bootstrap, self.size_scale)


def coco_evaluation_with_intervals(
    index, detections: list[dict[str, Any]], bootstrap: int, size_scale: float = 1.0
) -> Evaluation:
    """coco_metrics of `detections` against `index` (size classes judged at `size_scale`), and the bootstrap
    intervals of map and map_small over the index's images (`bootstrap` resamples, 0: none)."""
    evaluation = coco_evaluation(index, detections, size_scale)
    statistics: dict[str, ResampledAP] = {}
    if bootstrap:
        statistics = {name: ResampledAP(evaluation, area) for name, area in CocoEvaluator.BOOTSTRAPPED.items()}
    # The images evaluate() ran on (a private attribute it sets, which the pycocotools stubs leave out).
    images = len(evaluation._paramsEval.imgIds)  # type: ignore[attr-defined]
    return Evaluation(evaluation_metrics(evaluation), bootstrap_ci95(statistics, images, bootstrap))
