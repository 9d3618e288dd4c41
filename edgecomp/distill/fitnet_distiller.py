"""FitNet-style feature distillation (Romero et al., "FitNets: Hints for thin deep nets", ICLR 2015), the feature
baseline of ScaleKD's Table 5.

A regressor maps the student's "guided" feature to the teacher's "hint" feature and an L2 loss pulls them together:
L_feat = ||r(F^S) - F^T||^2, ScaleKD's eq. 1 without the scale decoupling. Here r is a 1x1 convolution (the usual
detection adaptation of FitNet's convolutional regressor) per distilled feature:
- `features="last_stage"`: the last backbone stage, where ScaleKD's SDF works: the like-for-like comparison with
  the SDF;
- `features="pyramid"`: every pyramid level (the neck's outputs), each with the teacher level of the same
  effective stride (edgecomp.distill.alignment), the losses summed over the levels.
The teacher's feature is put on the student's grid and standardised per image (parameter-free, as the SDF's
inputs), so that FitNet's and the SDF's L_feat have the same scale and `alpha` the same meaning. L_feat is the
squared distance summed over channels, averaged over positions and images (the SDF's reduction).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

from edgecomp.distill.alignment import aligned_pyramid, grid_size, to_grid
from edgecomp.distill.distiller import DistillationBatch, Distiller, feature_channels
from edgecomp.distill.families import FamilyView
from edgecomp.distill.sdf import ScaleDecoupledFeatureDistillation, standardise

HintFeatures = Literal["last_stage", "pyramid"]


class FitNet(Distiller):
    terms = ("loss_feat",)

    def __init__(
        self, student_view: FamilyView, teacher_view: FamilyView, teacher_scale: float, features: HintFeatures
    ) -> None:
        super().__init__(student_view, teacher_view, teacher_scale)
        if features not in ("last_stage", "pyramid"):
            raise ValueError(f"FitNet features must be 'last_stage' or 'pyramid', got {features!r}")
        self.features = features
        student, teacher = feature_channels(student_view.adapter), feature_channels(teacher_view.adapter)
        if features == "last_stage":
            pairs = [(student.last_stage, teacher.last_stage)]
        else:
            pairs = [(s, teacher.pyramid[p.teacher]) for s, p in zip(student.pyramid, self.level_pairs, strict=True)]
        self.regressors = nn.ModuleList([nn.Conv2d(s, t, 1) for s, t in pairs])

    def hint_pairs(self, batch: DistillationBatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(guided student feature, hint teacher feature on its grid) per distilled feature."""
        if self.features == "last_stage":
            student = batch.student.last_stage
            return [(student, to_grid(batch.teacher.last_stage, grid_size(student)))]
        teacher = aligned_pyramid(batch.teacher.pyramid, batch.student.pyramid, self.level_pairs)
        return list(zip(batch.student.pyramid, teacher, strict=True))

    def losses(self, batch: DistillationBatch) -> dict[str, torch.Tensor]:
        terms = [
            ScaleDecoupledFeatureDistillation.distance(regressor(student), standardise(teacher.detach()))
            for regressor, (student, teacher) in zip(self.regressors, self.hint_pairs(batch), strict=True)
        ]
        return {"loss_feat": torch.stack(terms).sum()}
