"""What the detection distillers need from a detector family, beyond `DetectorAdapter`.

Output distillation (Chen et al. 2017, ScaleKD's L_cls and L_bbox) compares two networks' predictions position by
position (anchor by anchor, location by location, proposal by proposal) and bounds the student's regression by the
ground truth's, so it needs, per family:

- the head's raw per-level outputs flattened in the family's own position order (`dense`), with the regression in
  a *box space* where an L2 distance means something: torchvision's anchor deltas and FCOS's side distances as
  they are, YOLOv8's side distributions as their expected distances (the DFL expectation, in stride units);
- the family's own detection loss on given head outputs (`detection_step`), so that a distiller's features (the
  CSA's) can be trained through the student's head, and so that the student's loss and its distillation share
  one forward pass; with it, the ground-truth assignment the loss used (which positions are positives and their
  regression targets in the box space): Chen et al.'s bounded regression loss needs both;
- how a box-space regression changes when its decoded box moves diagonally by one pixel (`StageTargets.
  shift_per_pixel`), for the perturbation study of ScaleKD's Table 1;
- the pyramid's strides (level pairing, edgecomp.distill.alignment) and the backbone (early freezing).

A two-stage detector has a second stage whose predictions are per proposal: `DetectionStep` carries the proposals
the student sampled, on which the other networks' second stages are evaluated (`outputs_on`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
from omegaconf import DictConfig

from edgecomp.models.detection.adapter import DetectorAdapter, HeadOutputs
from edgecomp.models.detection.torchvision_dense import flatten_head_level

Activation = Literal["sigmoid", "softmax"]


@dataclass
class Stage:
    """One stage's predictions, flattened so that two networks compare position by position: per level (one entry
    for a second stage), `logits` (M_l, K) and `boxes` (M_l, 4), M_l = images x positions of that level, in the
    family's order. `activation`: how the logits become class probabilities (per-class sigmoid, or softmax)."""

    logits: list[torch.Tensor]
    boxes: list[torch.Tensor]
    activation: Activation


@dataclass
class StageTargets:
    """The ground-truth assignment of one stage, per level like `Stage`: `positives` (M_l,) bool, `boxes` (M_l, 4)
    the regression targets in the box space (meaningful at positives only), `shift_per_pixel` (M_l, 4): the
    change of a box-space regression whose decoded box moves by +1 pixel in x and in y (a diagonal shift), and
    `box_scale` (M_l, 4): what each box-space coordinate is divided by to be in relative units, those of an anchor
    delta (edgecomp.distill.output_losses, `box_units`): 1 for a delta coder's space; the assigned object's width,
    height, width, height in the space's own unit for a space of side distances (FCOS's, YOLOv8's)."""

    positives: list[torch.Tensor]
    boxes: list[torch.Tensor]
    shift_per_pixel: list[torch.Tensor]
    box_scale: list[torch.Tensor]


def side_distance_scale(boxes: torch.Tensor, unit: torch.Tensor | float) -> torch.Tensor:
    """(..., 4) xyxy boxes and the length `unit` of a side-distance box space (broadcastable to (..., 4): each
    position's stride, or its anchor's (w, h, w, h)) -> (..., 4): the boxes' (w, h, w, h) in that unit, the
    `box_scale` of such a space."""
    widths, heights = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    return torch.stack([widths, heights, widths, heights], dim=-1) / unit


@dataclass
class DetectionStep:
    """The family's detection loss on one network's outputs, with what output distillation reuses: the flattened
    outputs and the ground-truth assignment per stage ("dense": the pyramid levels; "roi": a second stage)."""

    losses: dict[str, torch.Tensor]
    outputs: dict[str, Stage]
    targets: dict[str, StageTargets]
    image_size: int
    # Two-stage only: the proposals the second stage was sampled on (per image, pixels of the S x S frame) and
    # their sampled labels (the family's numbering, 0 = background), at which class-specific boxes are read.
    proposals: list[torch.Tensor] | None = None
    proposal_labels: torch.Tensor | None = None


class FamilyView(ABC):
    """The distillation view of one detector (`adapter`): see the module docstring."""

    def __init__(self, adapter: DetectorAdapter) -> None:
        self.adapter = adapter

    @classmethod
    def refusal(cls, model_config: DictConfig) -> str | None:
        """Why this view cannot distil the model `model_config` builds (a family whose adapter covers several heads,
        not all of them viewable), said before any work; None when it can."""
        return None

    @property
    @abstractmethod
    def strides(self) -> tuple[int, ...]:
        """Output stride of each pyramid level, finest first."""

    @property
    @abstractmethod
    def backbone(self) -> nn.Module:
        """The backbone (not the neck or head): what ScaleKD's schedule freezes early in training."""

    @abstractmethod
    def dense(self, head: HeadOutputs) -> Stage:
        """The first stage's raw per-level outputs, flattened in the family's position order, boxes in box space."""

    @abstractmethod
    def detection_step(
        self, pyramid: list[torch.Tensor], head: HeadOutputs, targets: list[dict[str, torch.Tensor]]
    ) -> DetectionStep:
        """The family's own training loss on `head` (= this adapter's head on `pyramid`) for `targets` (edgecomp
        conventions: xyxy pixels, labels 0..C-1), with the flattened outputs and the assignment it used."""

    def outputs_on(
        self, pyramid: list[torch.Tensor], head: HeadOutputs, step: DetectionStep, scale: float = 1.0
    ) -> dict[str, Stage]:
        """This network's predictions at the positions of `step` (another network's detection step): its dense
        outputs, and for a two-stage family its second stage on `step`'s proposals, which are scaled by `scale` when
        this network saw the images `scale` times larger (a teacher at a higher resolution)."""
        return {"dense": self.dense(head)}


def flatten_level(output: torch.Tensor, values: int) -> torch.Tensor:
    """(N, A * values, H, W) -> (N * H * W * A, values), in torchvision's order (image, row, column, anchor): what its
    heads do before concatenating the levels (channel a * values + v is anchor a's value v)."""
    return flatten_head_level(output, values).reshape(-1, values)


def split_levels(per_image: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """(N, sum(sizes), ...) per-image values over all levels -> per level (N * size_l, ...), image-major, the order
    of `flatten_level`."""
    return [part.reshape(-1, *per_image.shape[2:]) for part in per_image.split(sizes, dim=1)]
