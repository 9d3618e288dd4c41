"""The distillation view of torchvision's RetinaNet and FCOS (edgecomp.models.detection.torchvision_dense).

The detection loss on given head outputs is torchvision's own `compute_loss` (the detector's matching, then its
head's losses), fed the per-level outputs flattened exactly as torchvision's heads flatten them, with the anchors
its anchor generator makes for the levels' sizes. The ground-truth assignment is the one that loss used: the
per-anchor matches torchvision computes inside `compute_loss` are recorded on their way to the head's loss
(`recorded_matches`), so the assignment is the library's, computed once.

Box spaces (the raw regression, as the heads output it):
- RetinaNet: deltas (dx, dy, dw, dh) relative to the anchor, torchvision's BoxCoder (weights 1, 1, 1, 1); a box
  moved by +1 px in x and y changes (dx, dy) by (w_x / anchor_w, w_y / anchor_h), (dw, dh) not at all;
- FCOS: distances (l, t, r, b) from the location to the box sides divided by the anchor size (= the level's stride;
  BoxLinearCoder); the shift changes them by (-1, -1, +1, +1) / anchor size.
Relative units (edgecomp.distill.output_losses): RetinaNet's deltas are them already; FCOS's distances are divided by
the matched box's width or height in anchor sizes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from edgecomp.distill.families.family_view import (
    DetectionStep,
    FamilyView,
    Stage,
    StageTargets,
    flatten_level,
    side_distance_scale,
    split_levels,
)
from edgecomp.models.detection.adapter import HeadOutputs
from edgecomp.models.detection.torchvision_dense import FCOSAdapter, TorchvisionDenseAdapter, TorchvisionDetectorAdapter

if TYPE_CHECKING:  # annotations only (torchvision ships no type information, so to mypy these are opaque)
    from torchvision.models.detection.fcos import FCOSHead
    from torchvision.models.detection.retinanet import RetinaNetHead


@contextmanager
def recorded_matches(head: RetinaNetHead | FCOSHead) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record the `matched_idxs` (per image, the matched ground-truth index of each anchor; < 0: none) that a
    torchvision one-stage detector's `compute_loss` passes to its head's `compute_loss`.

    Both RetinaNet and FCOS compute their matching inside `compute_loss` and hand it to `head.compute_loss`; an
    instance attribute shadows that method for the duration, passing everything through unchanged."""
    record: dict[str, list[torch.Tensor]] = {}
    original = head.compute_loss

    def compute_loss(targets, head_outputs, anchors, matched_idxs):
        record["matched_idxs"] = matched_idxs
        return original(targets, head_outputs, anchors, matched_idxs)

    head.compute_loss = compute_loss
    try:
        yield record
    finally:
        del head.compute_loss


class TorchvisionView(FamilyView):
    """What every torchvision detector's view reads the same way: the pyramid's strides, the backbone's body."""

    adapter: TorchvisionDetectorAdapter

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(self.adapter.pyramid_strides)

    @property
    def backbone(self) -> nn.Module:
        return self.adapter.detector.backbone.body


class TorchvisionDenseView(TorchvisionView):
    adapter: TorchvisionDenseAdapter

    def dense(self, head: HeadOutputs) -> Stage:
        return Stage(
            logits=[flatten_level(c, self.adapter.num_classes) for c in head.classification],
            boxes=[flatten_level(r, 4) for r in head.regression],
            activation="sigmoid",
        )

    def compute_loss(
        self, targets: list[dict[str, torch.Tensor]], outputs: dict[str, torch.Tensor], anchors: list[torch.Tensor],
        level_sizes: list[int],
    ) -> dict[str, torch.Tensor]:  # fmt: skip
        return self.adapter.detector.compute_loss(targets, outputs, anchors)

    def encode(self, gt_boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Ground-truth boxes (..., 4) as regression targets relative to `anchors` (..., 4), in the box space."""
        return self.adapter.detector.box_coder.encode_single(gt_boxes.reshape(-1, 4), anchors.reshape(-1, 4)).view(
            gt_boxes.shape
        )

    def box_scale(self, gt_boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Anchor deltas are the relative units themselves (see edgecomp.distill.output_losses)."""
        return torch.ones_like(anchors)

    def shift_per_pixel(self, anchors: torch.Tensor) -> torch.Tensor:
        weight_x, weight_y, _, _ = self.adapter.detector.box_coder.weights
        widths = anchors[..., 2] - anchors[..., 0]
        heights = anchors[..., 3] - anchors[..., 1]
        zeros = torch.zeros_like(widths)
        return torch.stack([weight_x / widths, weight_y / heights, zeros, zeros], dim=-1)

    def detection_step(
        self, pyramid: list[torch.Tensor], head: HeadOutputs, targets: list[dict[str, torch.Tensor]]
    ) -> DetectionStep:
        detector = self.adapter.detector
        size = self.adapter.input_size
        anchors = self.adapter.anchors(head)
        level_sizes = [
            c.shape[-2] * c.shape[-1] * (c.shape[1] // self.adapter.num_classes) for c in head.classification
        ]
        detector_targets = [
            {"boxes": t["boxes"], "labels": self.adapter.to_detector_labels(t["labels"])} for t in targets
        ]
        with recorded_matches(detector.head) as record:
            losses = self.compute_loss(
                detector_targets, self.adapter.torchvision_head_outputs(head), anchors, level_sizes
            )
        matched = torch.stack(record["matched_idxs"])  # (N, P)
        stacked_anchors = torch.stack(anchors)  # (N, P, 4)
        gt_boxes = torch.stack(
            [
                t["boxes"][m.clip(min=0)] if len(t["boxes"]) else torch.zeros_like(a)
                for t, m, a in zip(targets, matched, anchors, strict=True)
            ]
        ).to(stacked_anchors)
        assignment = StageTargets(
            positives=split_levels(matched >= 0, level_sizes),
            boxes=split_levels(self.encode(gt_boxes, stacked_anchors), level_sizes),
            shift_per_pixel=split_levels(self.shift_per_pixel(stacked_anchors), level_sizes),
            box_scale=split_levels(self.box_scale(gt_boxes, stacked_anchors), level_sizes),
        )
        return DetectionStep(
            losses=losses, outputs={"dense": self.dense(head)}, targets={"dense": assignment}, image_size=size
        )


class RetinaNetView(TorchvisionDenseView):
    """RetinaNet: focal loss + L1 on anchor deltas (torchvision's defaults)."""


class FCOSView(TorchvisionDenseView):
    """FCOS: focal loss + GIoU + centre-ness; its centre-ness output is not distilled (Chen et al. distil the
    classification and the box regression)."""

    adapter: FCOSAdapter

    def compute_loss(self, targets, outputs, anchors, level_sizes):
        return self.adapter.detector.compute_loss(targets, outputs, anchors, level_sizes)

    def encode(self, gt_boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        return self.adapter.detector.box_coder.encode(anchors, gt_boxes)

    def box_scale(self, gt_boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Side distances in anchor sizes: divided by the box's size in anchor sizes, they are relative to it."""
        return side_distance_scale(gt_boxes, side_distance_scale(anchors, 1.0))

    def shift_per_pixel(self, anchors: torch.Tensor) -> torch.Tensor:
        inverse_w = 1.0 / (anchors[..., 2] - anchors[..., 0])
        inverse_h = 1.0 / (anchors[..., 3] - anchors[..., 1])
        return torch.stack([-inverse_w, -inverse_h, inverse_w, inverse_h], dim=-1)
