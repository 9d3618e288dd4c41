"""The interface of a detection distiller: what it adds to the student's loss, given one batch seen by both networks.

A distiller is an nn.Module holding the training-only parts of a method (adapters, ScaleKD's SDF and CSA); the
LightningModule (edgecomp.lit.detection_distillation_module) runs the networks once per batch and asks the distiller for its
terms, which it weighs as ScaleKD's eq. 7: L = alpha L_feat + beta L_cls + gamma L_bbox + L_det. A method reports
only the terms it has (FitNet: L_feat; Chen et al.: L_cls, L_bbox; ScaleKD: all three). Nothing of the distiller is
deployed: the student alone is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn as nn

from edgecomp.distill.alignment import LevelPair, pair_levels
from edgecomp.distill.families import DetectionStep, FamilyView
from edgecomp.models.detection.adapter import DetectorAdapter, DetectorFeatures, HeadOutputs

TERMS = ("loss_feat", "loss_cls", "loss_bbox")


@dataclass
class DistillationBatch:
    """One training batch as both networks saw it: the student's features, head outputs and detection step (with
    gradients), the teacher's features on its own (`teacher_scale` x) input (without)."""

    images: torch.Tensor
    targets: list[dict[str, torch.Tensor]]
    student: DetectorFeatures
    student_head: HeadOutputs
    student_step: DetectionStep
    teacher: DetectorFeatures


@dataclass(frozen=True)
class FeatureChannels:
    last_stage: int
    pyramid: list[int]


@torch.no_grad()
def feature_channels(adapter: DetectorAdapter) -> FeatureChannels:
    """The channels of an adapter's last stage and pyramid levels, from one small forward pass (64 x 64, every
    family's strides divide it; the adapter's train/eval mode is kept, and in eval mode no statistics move)."""
    was_training = adapter.training
    adapter.eval()
    try:
        parameter = next(adapter.parameters())
        features = adapter.features(torch.zeros(1, 3, 64, 64, dtype=parameter.dtype, device=parameter.device))
    finally:
        adapter.train(was_training)
    return FeatureChannels(features.last_stage.shape[1], [level.shape[1] for level in features.pyramid])


class Distiller(nn.Module, ABC):
    """A distillation method's training-only modules and loss terms (see the module docstring)."""

    terms: tuple[str, ...] = ()  # which of TERMS the method produces

    def __init__(self, student_view: FamilyView, teacher_view: FamilyView, teacher_scale: float) -> None:
        super().__init__()
        # Views hold the networks; plain attributes, so the networks are not this module's submodules.
        self.student_view = student_view
        self.teacher_view = teacher_view
        self.teacher_scale = teacher_scale
        self.level_pairs: list[LevelPair] = pair_levels(student_view.strides, teacher_view.strides, teacher_scale)

    @abstractmethod
    def losses(self, batch: DistillationBatch) -> dict[str, torch.Tensor]:
        """The method's terms (a subset of TERMS, exactly `self.terms`), each a scalar."""

    def student_parameters(self) -> Iterator[nn.Parameter]:
        """The distiller's parameters that train with the student, on its loss (adapters, SDF's student side)."""
        return (p for p in self.parameters() if p.requires_grad)
