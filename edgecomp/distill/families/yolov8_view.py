"""The distillation view of Ultralytics YOLOv8 (edgecomp.models.detection.yolov8).

The detection loss on given head outputs is Ultralytics' own (`v8DetectionLoss.get_assigned_targets_and_loss`:
task-aligned assignment, BCE, CIoU + DFL, gain-weighted), which also returns the assignment it used: the
foreground mask and each anchor point's assigned box.

Box space: YOLOv8 regresses each side's distance from the anchor point (in units of the level's stride) as a
distribution over `reg_max` bins; an L2 distance between two such distributions' logits means little, so the box
space is the distribution's expectation (Ultralytics' DFL decoding): (l, t, r, b) in stride units, in [0, reg_max - 1].
The ground-truth targets are the assigned boxes' distances, clipped to that range as Ultralytics clips them. A box
moved by +1 px in x and y changes (l, t, r, b) by (-1, -1, +1, +1) / stride. Relative units divide each side by the
assigned box's width or height in stride units.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from edgecomp.distill.families.family_view import (
    DetectionStep,
    FamilyView,
    Stage,
    StageTargets,
    side_distance_scale,
    split_levels,
)
from edgecomp.models.detection.adapter import HeadOutputs
from edgecomp.models.detection.yolov8 import YOLOv8Adapter


class YOLOv8View(FamilyView):
    adapter: YOLOv8Adapter

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.adapter.detect.stride)

    @property
    def backbone(self) -> nn.Module:
        return self.adapter.network.model[: self.adapter.backbone_end + 1]

    @property
    def bins(self) -> int:
        return self.adapter.detect.reg_max

    def expected_distances(self, distribution: torch.Tensor) -> torch.Tensor:
        """(N, 4 * reg_max, H, W) side distributions (logits) -> (N * H * W, 4) expected distances in stride units."""
        n, _, h, w = distribution.shape
        probabilities = distribution.view(n, 4, self.bins, h, w).softmax(dim=2)
        bins = torch.arange(self.bins, dtype=probabilities.dtype, device=probabilities.device).view(1, 1, -1, 1, 1)
        return (probabilities * bins).sum(dim=2).permute(0, 2, 3, 1).reshape(-1, 4)

    def dense(self, head: HeadOutputs) -> Stage:
        classes = self.adapter.num_classes
        return Stage(
            logits=[c.permute(0, 2, 3, 1).reshape(-1, classes) for c in head.classification],
            boxes=[self.expected_distances(r) for r in head.regression],
            activation="sigmoid",
        )

    def detection_step(
        self, pyramid: list[torch.Tensor], head: HeadOutputs, targets: list[dict[str, torch.Tensor]]
    ) -> DetectionStep:
        predictions = self.adapter.flatten_head_outputs(head)
        image_size = head.classification[0].shape[-1] * self.strides[0]
        batch = self.adapter.ultralytics_targets(targets, image_size, like=predictions["scores"])
        assignment, losses, _ = self.adapter.criterion.get_assigned_targets_and_loss(predictions, batch)
        foreground, _, assigned_boxes, anchor_points, strides = assignment  # (N, P), _, (N, P, 4) px, (P, 2), (P, 1)
        scaled = assigned_boxes / strides
        distances = torch.cat([anchor_points - scaled[..., :2], scaled[..., 2:] - anchor_points], dim=-1)
        distances = distances.clamp(0, self.bins - 1)
        inverse = (1.0 / strides).expand(-1, 2)
        shift = torch.cat([-inverse, inverse], dim=-1).expand_as(distances)
        level_sizes = [c.shape[-2] * c.shape[-1] for c in head.classification]
        return DetectionStep(
            losses={"box": losses[0], "cls": losses[1], "dfl": losses[2]},
            outputs={"dense": self.dense(head)},
            targets={
                "dense": StageTargets(
                    positives=split_levels(foreground.bool(), level_sizes),
                    boxes=split_levels(distances, level_sizes),
                    shift_per_pixel=split_levels(shift, level_sizes),
                    box_scale=split_levels(side_distance_scale(assigned_boxes, strides), level_sizes),
                )
            },
            image_size=image_size,
        )
