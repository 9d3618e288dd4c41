"""The distillation view of MMDetection's anchor-based one-stage heads (edgecomp.models.detection.mmdet): RetinaNet
and the other `AnchorHead`s with per-class sigmoid scores and a delta box coder.

The detection loss on given head outputs is mmdet's own `loss_by_feat` (anchors, MaxIoU assignment, sampling,
losses). The ground-truth assignment is the one that loss used: the targets mmdet's `get_targets` returns inside
`loss_by_feat` are recorded on their way out (`recorded_targets`), so the assignment is the library's, computed once.

Order: mmdet flattens a level's (N, A*K, H, W) output as (image, row, column, anchor), channel a*K + c being anchor a's
class c, as torchvision does, so `flatten_level` reads both; its anchors and targets come per level as (N, P_l, ...)
in the same order.

Box space: mmdet's `DeltaXYWHBBoxCoder` deltas ((dx, dy, dw, dh) - means) / stds relative to the anchor (RetinaNet:
means 0, stds 1), the raw regression; a box moved by +1 px in x and y changes (dx, dy) by (1 / (anchor_w std_x),
1 / (anchor_h std_y)), (dw, dh) not at all. Deltas are relative units already (edgecomp.distill.output_losses).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
from omegaconf import DictConfig

from edgecomp.distill.families.family_view import DetectionStep, FamilyView, Stage, StageTargets, flatten_level
from edgecomp.models.detection.adapter import HeadOutputs
from edgecomp.models.detection.mmdet import MMDetAdapter, head_class

if TYPE_CHECKING:  # mmdet is an optional extra, imported where it runs (and it ships no type information)
    from mmdet.models.dense_heads import AnchorHead


@contextmanager
def recorded_targets(head: AnchorHead) -> Iterator[dict[str, Any]]:
    """Record what an mmdet head's `get_targets` returns while `loss_by_feat` runs (an instance attribute shadows
    the method for the duration, passing everything through unchanged)."""
    record: dict[str, Any] = {}
    original = head.get_targets

    def get_targets(*args, **kwargs):
        record["targets"] = original(*args, **kwargs)
        return record["targets"]

    head.get_targets = get_targets
    try:
        yield record
    finally:
        del head.get_targets


class MMDetAnchorView(FamilyView):
    adapter: MMDetAdapter

    @classmethod
    def refusal(cls, model_config: DictConfig) -> str | None:
        """Why this view cannot distil the model a config builds (None: it can): an mmdet head that is not an
        anchor head with sigmoid scores and delta regression (FCOS's and GFL's point heads need views of their own)."""
        from mmdet.models.dense_heads import AnchorHead

        head = head_class(model_config.config)
        if not issubclass(head, AnchorHead):
            return (
                f"its mmdet head {head.__name__} is not an AnchorHead; edgecomp distils mmdet's anchor heads "
                "(RetinaNet: model.arch=retinanet_r50_fpn or retinanet_r101_fpn)"
            )
        return None

    def __init__(self, adapter: MMDetAdapter) -> None:
        super().__init__(adapter)
        head = adapter.detector.bbox_head
        coder = type(head.bbox_coder).__name__
        if not head.use_sigmoid_cls or head.reg_decoded_bbox or coder != "DeltaXYWHBBoxCoder":
            raise ValueError(
                f"{type(head).__name__}: the view reads sigmoid scores and DeltaXYWHBBoxCoder deltas, got "
                f"use_sigmoid_cls={head.use_sigmoid_cls}, reg_decoded_bbox={head.reg_decoded_bbox}, {coder}"
            )

    @property
    def head_module(self) -> AnchorHead:
        return self.adapter.detector.bbox_head

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(int(stride[0]) for stride in self.head_module.prior_generator.strides)

    @property
    def backbone(self) -> nn.Module:
        return self.adapter.detector.backbone

    def dense(self, head: HeadOutputs) -> Stage:
        return Stage(
            logits=[flatten_level(c, self.adapter.num_classes) for c in head.classification],
            boxes=[flatten_level(r, 4) for r in head.regression],
            activation="sigmoid",
        )

    def shift_per_pixel(self, anchors: torch.Tensor) -> torch.Tensor:
        std_x, std_y = (float(v) for v in self.head_module.bbox_coder.stds[:2])
        widths = anchors[..., 2] - anchors[..., 0]
        heights = anchors[..., 3] - anchors[..., 1]
        zeros = torch.zeros_like(widths)
        return torch.stack([1.0 / (widths * std_x), 1.0 / (heights * std_y), zeros, zeros], dim=-1)

    def detection_step(
        self, pyramid: list[torch.Tensor], head: HeadOutputs, targets: list[dict[str, torch.Tensor]]
    ) -> DetectionStep:
        bbox_head = self.head_module
        with recorded_targets(bbox_head) as record:
            losses = self.adapter.head_loss(head, targets)
        labels, label_weights, box_targets = record["targets"][:3]  # per level: (N, P_l), (N, P_l), (N, P_l, 4)
        sizes = [level.shape[-2:] for level in head.classification]
        anchor_list, _ = bbox_head.get_anchors(
            sizes, self.adapter.image_metas(len(targets)), device=head.classification[0].device
        )
        anchors = [torch.stack(per_image) for per_image in zip(*anchor_list, strict=True)]  # per level (N, P_l, 4)
        background = self.adapter.num_classes  # mmdet labels unassigned anchors with the class count
        assignment = StageTargets(
            positives=[
                ((lab < background) & (w > 0)).reshape(-1) for lab, w in zip(labels, label_weights, strict=True)
            ],
            boxes=[t.reshape(-1, 4) for t in box_targets],
            shift_per_pixel=[self.shift_per_pixel(a).reshape(-1, 4) for a in anchors],
            box_scale=[torch.ones_like(a).reshape(-1, 4) for a in anchors],
        )
        return DetectionStep(
            losses=losses,
            outputs={"dense": self.dense(head)},
            targets={"dense": assignment},
            image_size=self.adapter.input_size,
        )
