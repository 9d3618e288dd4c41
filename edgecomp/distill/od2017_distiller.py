"""Chen et al. 2017 output distillation ("Learning efficient object detection models with knowledge distillation",
NeurIPS 2017), the output baseline ("OD") of ScaleKD's Table 5: the student learns from the teacher's own head
outputs, L_cls (soft labels) and L_bbox (the teacher-bounded regression), edgecomp.distill.output_losses.

The teacher's outputs are compared with the student's on the student levels that have a teacher level of the same
effective stride (edgecomp.distill.alignment; at teacher_scale 1 every level), and for Faster R-CNN also in the
second stage, the teacher's RoI head evaluated on the proposals the student sampled. Chen et al.'s full method adds
a FitNet hint on the neck; this baseline is their output distillation alone, as ScaleKD's table lists FitNet and OD
separately (compressor=fitnet is the hint alone).
"""

from __future__ import annotations

import torch

from edgecomp.distill.distiller import DistillationBatch, Distiller
from edgecomp.distill.families import FamilyView
from edgecomp.distill.output_losses import OutputDistillationSettings, output_distillation


class OutputDistillation(Distiller):
    terms = ("loss_cls", "loss_bbox")

    def __init__(
        self,
        student_view: FamilyView,
        teacher_view: FamilyView,
        teacher_scale: float,
        settings: OutputDistillationSettings,
    ) -> None:
        super().__init__(student_view, teacher_view, teacher_scale)
        self.settings = settings
        self.reference_levels: dict[str, list[int | None]] = {
            "dense": [pair.teacher if pair.exact else None for pair in self.level_pairs],
            "roi": [0],
        }
        if all(level is None for level in self.reference_levels["dense"]):
            raise ValueError(
                f"no teacher level has the effective stride of a student level (student strides "
                f"{student_view.strides}, teacher strides {teacher_view.strides} at teacher_scale {teacher_scale})"
            )

    def losses(self, batch: DistillationBatch) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            teacher = self.teacher_view.adapter
            reference = self.teacher_view.outputs_on(
                batch.teacher.pyramid, teacher.head(batch.teacher.pyramid), batch.student_step, self.teacher_scale
            )
        step = batch.student_step
        loss_cls, loss_bbox = output_distillation(
            step.outputs, reference, step.targets, self.reference_levels, self.settings
        )
        return {"loss_cls": loss_cls, "loss_bbox": loss_bbox}
