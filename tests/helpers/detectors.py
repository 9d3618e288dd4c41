"""torchvision's detectors behind DetectorAdapter, small, and a scene they can learn: for the detector tests."""

from __future__ import annotations

import torch
import torch.nn as nn

from edgecomp.models.detection.adapter import DetectorAdapter
from edgecomp.models.detection.torchvision_dense import FCOSAdapter, RetinaNetAdapter
from edgecomp.models.detection.torchvision_two_stage import FasterRCNNAdapter

NUM_CLASSES = 3
SIZE = 64
FAMILIES = {"retinanet": RetinaNetAdapter, "fcos": FCOSAdapter, "faster_rcnn": FasterRCNNAdapter}
# The loss terms each family's adapter returns
LOSS_TERMS = {
    "retinanet": {"classification", "bbox_regression"},
    "fcos": {"classification", "bbox_regression", "bbox_ctrness"},
    "faster_rcnn": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"},
}
COLOURS = torch.tensor([[1.0, 0.3, 0.3], [0.3, 1.0, 0.3], [0.3, 0.3, 1.0]])  # one per class


def scene(size: int = SIZE) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Two dark images with 3 and 2 bright rectangles, coloured by class: real objects at the boxes."""
    boxes = [
        torch.tensor([[4.0, 6.0, 24.0, 30.0], [34.0, 8.0, 58.0, 28.0], [12.0, 38.0, 40.0, 60.0]]),
        torch.tensor([[8.0, 8.0, 36.0, 28.0], [30.0, 34.0, 60.0, 58.0]]),
    ]
    labels = [torch.tensor([0, 1, 2]), torch.tensor([2, 0])]
    images = torch.full((2, 3, size, size), 0.1)
    for index, (image_boxes, image_labels) in enumerate(zip(boxes, labels, strict=True)):
        for (x1, y1, x2, y2), label in zip(image_boxes.int().tolist(), image_labels.tolist(), strict=True):
            images[index, :, y1:y2, x1:x2] = COLOURS[label][:, None, None]
    return images, [{"boxes": b, "labels": lab} for b, lab in zip(boxes, labels, strict=True)]


def torchvision_detector(family: str, backbone: str = "resnet18", seed: int = 0, **kwargs) -> DetectorAdapter:
    """A `family` detector (FAMILIES) of NUM_CLASSES classes at SIZE on `backbone`, its weights drawn from `seed`."""
    torch.manual_seed(seed)
    return FAMILIES[family](NUM_CLASSES, kwargs.pop("input_size", SIZE), backbone, **kwargs)


def first_backbone_weight(adapter: DetectorAdapter) -> torch.Tensor:
    return next(module for module in adapter.detector.backbone.body.modules() if isinstance(module, nn.Conv2d)).weight


def spread_mmdet_head(model) -> None:
    """mmdet starts its heads' convolutions at std 0.01, so every score is the prior's within ~1e-6 and their order
    (which detections are kept, in what order) is float noise; random weights at std 0.1 spread them."""
    for layer in model.detector.bbox_head.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, std=0.1)
