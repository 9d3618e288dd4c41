"""RetinaNet and FCOS (torchvision's dense, one-stage detectors) behind `DetectorAdapter`.

The adapters wrap torchvision's own models, so anchors, target matching, losses, box decoding and NMS are
torchvision's; the adapter only adds the views the distillers need (last stage, pyramid, per-level head outputs)
and the edgecomp conventions of adapter.py. `TorchvisionDetectorAdapter`, the part shared with Faster R-CNN
(torchvision_two_stage.py), lives here too.

Why the adapters run the same network as the torchvision model:
- the torchvision model is built with `min_size = max_size = input_size` and `size_divisible = 1`: an S x S batch
  is "resized" by a scale factor of exactly 1 (bilinear at scale 1 copies the pixels) and not padded, so the
  tensor torchvision feeds its backbone is exactly `normalise(images)`, what `features()` and `forward()` use;
- `features()` runs the detector's own `backbone.body` and `backbone.fpn` modules (no copies), and `head()` calls
  the detector's own head submodules.

Labels: both heads classify with one sigmoid per class (focal loss) and index their targets by the label itself
(`gt_classes_target[..., labels] = 1`), so the adapter's labels 0..C-1 go in and come out unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.image_list import ImageList

from edgecomp.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from edgecomp.models.detection.adapter import DetectorAdapter, DetectorFeatures, HeadOutputs
from edgecomp.models.detection.backbones import PYRAMID_STRIDES, ExtraLevels, build_fpn_backbone


def flatten_head_level(level: torch.Tensor, values: int) -> torch.Tensor:
    """(N, A * values, H, W) -> (N, H * W * A, values), in torchvision's order (row, column, anchor): what its dense
    heads do before concatenating the levels (channel a * values + v is anchor a's value v)."""
    n, channels, h, w = level.shape
    anchors = channels // values
    return level.view(n, anchors, values, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, values)


def blank_images(like: torch.Tensor, count: int, size: int) -> ImageList:
    """What torchvision's anchor generator reads of the images: their batch's (H, W) and the count (no memory)."""
    return ImageList(like.new_zeros(()).expand(count, 3, size, size), [(size, size)] * count)


class TorchvisionDetectorAdapter(DetectorAdapter):
    """What the torchvision families share: normalisation, `features()`, and running the torchvision model for
    `loss()` and `predict()`.

    A torchvision detector decides what to compute (losses or detections) from its `training` flag, which
    `nn.Module.train()/eval()` also uses for BatchNorm. The adapter separates the two: the method decides what
    torchvision computes (`loss()` always matches targets and returns losses, `predict()` always decodes
    detections), while the adapter's own train/eval mode keeps governing the network (BatchNorm uses batch
    statistics and updates its running ones only in train mode). So a validation loss computed in eval mode, or a
    training loss with a backbone put in eval mode to freeze it (ScaleKD's schedule), leaves the BatchNorm
    statistics alone. Only the modules whose torchvision code branches on `training` are switched (the detector,
    its transform and, for Faster R-CNN, the RPN and RoI heads; see `_detection_logic_modules`); none of them holds
    a mode-dependent layer of its own.

    Subclasses build `self.detector` (the torchvision model, on `build_fpn_backbone`, with
    `**self.torchvision_transform_arguments()`) and implement `head()`.
    """

    # The torchvision model. torchvision ships no type information, so to mypy these classes (and so their backbone,
    # head, anchor generator... attributes) are opaque: an `nn.Module` annotation would make each submodule a
    # `Tensor | Module` (what `nn.Module.__getattr__` declares).
    detector: RetinaNet | FCOS | FasterRCNN
    extra_levels: ExtraLevels
    backbone_prefixes = ("detector.backbone.body.",)
    # A torchvision detector's own state_dict (RetinaNet, FCOS, Faster R-CNN: `backbone.body...`, `head...`); a
    # classification network's, as the backbone (ResNet: `conv1`, `layer1`..., its `fc` unused; MobileNetV2:
    # `features.<i>`, its `classifier` unused).
    weight_file_prefixes = (
        ("", "detector."),
        ("", "detector.backbone.body."),
        ("features.", "detector.backbone.body."),
    )

    def __init__(self, num_classes: int, input_size: int, backbone: str) -> None:
        super().__init__(num_classes, input_size)
        self.backbone_name = backbone
        self.pyramid_strides = PYRAMID_STRIDES[self.extra_levels]
        # Not persistent: constants, kept out of checkpoints; the same values go to torchvision's transform.
        self.register_normalisation(IMAGENET_MEAN, IMAGENET_STD)  # the same values go to torchvision's transform

    def torchvision_transform_arguments(self) -> dict[str, Any]:
        """Keyword arguments that make torchvision's `GeneralizedRCNNTransform` the identity on S x S images apart
        from the normalisation, which uses the adapter's mean and std (see the module docstring)."""
        return {
            "min_size": self.input_size,
            "max_size": self.input_size,
            "image_mean": list(IMAGENET_MEAN),
            "image_std": list(IMAGENET_STD),
            "size_divisible": 1,
        }

    def features(self, images: torch.Tensor) -> DetectorFeatures:
        """The backbone's last stage and the FPN pyramid (finest first). Any image size works; the torchvision
        model (loss, predict) expects S x S."""
        stages = self.detector.backbone.body(self.normalise(images))
        pyramid = self.detector.backbone.fpn(stages)
        return DetectorFeatures(last_stage=next(reversed(stages.values())), pyramid=list(pyramid.values()))

    def loss(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """torchvision's own loss dict (RetinaNet: classification, bbox_regression; FCOS: also bbox_ctrness;
        Faster R-CNN: loss_classifier, loss_box_reg, loss_objectness, loss_rpn_box_reg)."""
        self._check_images(images)
        self._check_targets(images, targets)
        detector_targets = [
            {"boxes": target["boxes"], "labels": self.to_detector_labels(target["labels"])} for target in targets
        ]
        with self._detection_logic(training=True):
            return self.detector(list(images), detector_targets)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """torchvision's decoding, score threshold and NMS; no gradients (detections are not differentiable)."""
        self._check_images(images)
        with self._detection_logic(training=False):
            detections = self.detector(list(images))
        return [
            {
                "boxes": detection["boxes"],
                "scores": detection["scores"],
                "labels": self.from_detector_labels(detection["labels"]),
            }
            for detection in detections
        ]

    def to_detector_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The adapter's labels 0..C-1 as the torchvision model numbers them (identity for sigmoid heads)."""
        return labels

    def from_detector_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return labels

    def _detection_logic_modules(self) -> list[nn.Module]:
        return [self.detector, self.detector.transform]

    @contextmanager
    def _detection_logic(self, training: bool) -> Iterator[None]:
        """Set the `training` flag of the modules whose torchvision code branches on it (not their children),
        and restore it afterwards, whatever happens."""
        modules = self._detection_logic_modules()
        previous = [module.training for module in modules]
        for module in modules:
            module.training = training
        try:
            yield
        finally:
            for module, was_training in zip(modules, previous, strict=True):
                module.training = was_training


class TorchvisionDenseAdapter(TorchvisionDetectorAdapter):
    """A one-stage torchvision detector (`torchvision_class`) on an FPN backbone with P6/P7, C sigmoid classes."""

    torchvision_class: type[nn.Module]
    extra_levels: ExtraLevels = "p6p7"

    def __init__(
        self,
        num_classes: int,
        input_size: int,
        backbone: str = "resnet18",
        score_threshold: float = 0.05,
        max_detections: int = 100,
    ) -> None:
        super().__init__(num_classes, input_size, backbone)
        network, _ = build_fpn_backbone(backbone, self.extra_levels)
        self.detector = self.torchvision_class(
            network,
            num_classes,
            score_thresh=score_threshold,
            detections_per_img=max_detections,
            **self.torchvision_transform_arguments(),
        )
        self.num_anchors = self.detector.anchor_generator.num_anchors_per_location()[0]

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """`decode(forward(images))`: the deployable network, then torchvision's own decoding, score threshold and
        NMS (what a deployed file's outputs go through too)."""
        self._check_images(images)
        return self.decode(self(images))

    def torchvision_head_outputs(self, head: HeadOutputs) -> dict[str, torch.Tensor]:
        """The per-level outputs as torchvision's head returns them (its loss and post-processing read them so):
        (N, sum_l H_l W_l A, values)."""
        return {
            "cls_logits": torch.cat([flatten_head_level(c, self.num_classes) for c in head.classification], dim=1),
            "bbox_regression": torch.cat([flatten_head_level(r, 4) for r in head.regression], dim=1),
        }

    def anchors(self, head: HeadOutputs) -> list[torch.Tensor]:
        """The detector's own anchors for the levels' grids on the S x S input, one (sum_l H_l W_l A, 4) per image."""
        first = head.classification[0]
        return self.detector.anchor_generator(blank_images(first, first.shape[0], self.input_size), head.classification)

    @torch.no_grad()
    def decode(self, outputs: HeadOutputs) -> list[dict[str, torch.Tensor]]:
        """torchvision's post-processing (`postprocess_detections`: per-level top-k above the score threshold, box
        decoding against its anchors, class-wise NMS, `max_detections`) on per-level head outputs. They are
        flattened as torchvision's head flattens them, and the anchors come from the detector's own anchor
        generator for the levels' grids on the S x S input (torchvision's transform is the identity there, so its
        final rescaling is too)."""
        per_level = [level.shape[-2] * level.shape[-1] * self.num_anchors for level in outputs.classification]
        detections = self.detector.postprocess_detections(
            {name: list(value.split(per_level, dim=1)) for name, value in self.torchvision_head_outputs(outputs).items()},
            [list(image_anchors.split(per_level)) for image_anchors in self.anchors(outputs)],
            [(self.input_size, self.input_size)] * len(outputs.classification[0]),
        )
        return [
            {"boxes": d["boxes"], "scores": d["scores"], "labels": self.from_detector_labels(d["labels"])}
            for d in detections
        ]


class RetinaNetAdapter(TorchvisionDenseAdapter):
    """torchvision's RetinaNet (v1 layout: P3-P7, P6 from P5, 9 anchors per location, focal loss, L1 box loss),
    all of torchvision's defaults except the input size, score threshold and detection count.

    `head()` returns, per level l (strides 8..128), classification logits (N, A*C, h_l, w_l) and box deltas
    (N, A*4, h_l, w_l), A = 9: the head's submodules (`conv` tower then `cls_logits` / `bbox_reg`) applied to each
    level, i.e. torchvision's head output before it flattens the levels to (N, sum_l h_l*w_l*A, C) and concatenates
    them; channel a*C + c is anchor a's logit for class c, as torchvision's own reshape reads it.
    """

    torchvision_class = RetinaNet

    def head(self, pyramid: list[torch.Tensor]) -> HeadOutputs:
        classification_head = self.detector.head.classification_head
        regression_head = self.detector.head.regression_head
        return HeadOutputs(
            classification=[classification_head.cls_logits(classification_head.conv(level)) for level in pyramid],
            regression=[regression_head.bbox_reg(regression_head.conv(level)) for level in pyramid],
        )


@dataclass
class FCOSHeadOutputs(HeadOutputs):
    """FCOS's third output: the centre-ness logit per location, (N, 1, h_l, w_l) per level. Part of the deployable
    network (FCOS scores a detection as sqrt(sigmoid(class) * sigmoid(centre-ness)))."""

    centerness: list[torch.Tensor]


class FCOSAdapter(TorchvisionDenseAdapter):
    """torchvision's FCOS (P3-P7, P6 from P5, one location per cell, GroupNorm head towers, focal + GIoU +
    centre-ness losses), all of torchvision's defaults except the input size, score threshold (torchvision's is
    0.2; 0.05 here, the usual value for mAP evaluation) and detection count.

    `head()` returns an `FCOSHeadOutputs`, per level l (strides 8..128): classification logits (N, C, h_l, w_l),
    box regression (N, 4, h_l, w_l) = the ReLU'd distances to the box sides in units of the level's stride
    (torchvision applies the ReLU inside its head, so it is part of the raw output), and centre-ness logits
    (N, 1, h_l, w_l). Computed by applying the head's submodules to each level, i.e. torchvision's head output
    before it flattens and concatenates the levels.
    """

    torchvision_class = FCOS
    head_outputs_class = FCOSHeadOutputs

    def head(self, pyramid: list[torch.Tensor]) -> FCOSHeadOutputs:
        classification_head = self.detector.head.classification_head
        regression_head = self.detector.head.regression_head
        classification, regression, centerness = [], [], []
        for level in pyramid:
            classification.append(classification_head.cls_logits(classification_head.conv(level)))
            box_features = regression_head.conv(level)
            regression.append(nn.functional.relu(regression_head.bbox_reg(box_features)))
            centerness.append(regression_head.bbox_ctrness(box_features))
        return FCOSHeadOutputs(classification=classification, regression=regression, centerness=centerness)

    def torchvision_head_outputs(self, head: HeadOutputs) -> dict[str, torch.Tensor]:
        if not isinstance(head, FCOSHeadOutputs):
            raise TypeError(f"FCOS head outputs carry centre-ness; got {type(head).__name__}")
        return {
            **super().torchvision_head_outputs(head),
            "bbox_ctrness": torch.cat([flatten_head_level(c, 1) for c in head.centerness], dim=1),
        }
