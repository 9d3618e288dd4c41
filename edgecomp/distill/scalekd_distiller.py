"""ScaleKD (Zhu et al., "ScaleKD: Distilling Scale-Aware Knowledge in Small Object Detector", CVPR 2023): the
distiller's three terms of eq. 7 and its assistant.

- L_feat: scale-decoupled feature distillation on the last backbone stage (section 3.1, edgecomp.distill.sdf);
- the cross-scale assistant (section 3.2, edgecomp.distill.csa) at every student pyramid level, on the student's
  pyramid and the teacher's aligned to it; its pyramid runs through the student's detection head ("sharing the
  detection head for supervision") and is trained on the ground truth with the student family's detection loss
  (`assistant_step`) by its own optimizer, before the student's update (edgecomp.lit.scalekd_module);
- L_cls and L_bbox: Chen et al.'s output losses from the assistant's head outputs -- after its update in this
  iteration -- to the student's, at every level and, for Faster R-CNN, for the RoI head on the student's proposals
  ("instead of transferring the teacher's output knowledge, we transfer the CSA's knowledge on both classification
  and regression branches to students").

The student's head runs on the assistant's features with its BatchNorm statistics held (YOLOv8's head has
BatchNorm): they are the deployed student's statistics, and must describe the student's own features only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import torch
import torch.nn as nn
from pydantic import BeforeValidator, Field, model_validator

from edgecomp.distill.alignment import aligned_pyramid
from edgecomp.distill.csa import Attention, CrossScaleAssistant, QuerySide, Residual
from edgecomp.distill.distiller import DistillationBatch, Distiller, feature_channels
from edgecomp.distill.families import DetectionStep, FamilyView
from edgecomp.distill.output_losses import OutputDistillationSettings, output_distillation
from edgecomp.distill.sdf import ScaleDecoupledFeatureDistillation
from edgecomp.models.detection.adapter import HeadOutputs
from edgecomp.settings import Settings, list_as_tuple

# One whole number >= 1 per branch (dilations) or head group (rates)
WholeNumbers = Annotated[tuple[Annotated[int, Field(ge=1)], ...], BeforeValidator(list_as_tuple)]


class SDFSettings(Settings):
    """The scale-decoupled feature distillation as configured (`compressor.sdf`)."""

    enabled: bool = Field(True, description="true or false (false: no SDF, no L_feat: Table 6/7's rows without it)")
    weight_sharing: bool = Field(
        True, description="true or false (one set of bottleneck weights for the three dilations, Table 7)"
    )
    embed_channels: int = Field(128, ge=1, description="a whole number >= 1 (each branch's MLP output per position)")
    dilations: WholeNumbers = Field((1, 2, 3), min_length=1, description="whole numbers >= 1 (the paper: 1, 2, 3)")


class CSASettings(Settings):
    """The cross-scale assistant as configured (`compressor.csa`, its optimizer aside)."""

    enabled: bool = Field(
        True, description="true or false (false: no assistant, no assistant training, no L_cls / L_bbox)"
    )
    attention: Attention = Field(
        "msc",
        description="msc (the paper's multi-scale cross-attention) or plain (standard multi-head cross-attention)",
    )
    residual: Residual = Field(
        "teacher",
        description="teacher (a projection of the teacher's feature), student (the student's feature) or none",
    )
    multi_scale: bool = Field(
        True, description="true or false (false: every MSC rate 1; the aggregation MLP and P(V) stay)"
    )
    rates: WholeNumbers = Field(
        (1, 2, 4, 8), min_length=1, description="whole down-sampling rates >= 1, one per head group"
    )
    heads: int = Field(4, ge=1, description="a whole number of attention heads >= 1, split evenly over the rates")
    dim: int = Field(128, ge=1, description="the attention width (heads x head dimension), a multiple of heads")
    query_from: QuerySide = Field(
        "student", description="student or teacher: which network gives the query (eq. 3); the other key and value"
    )

    @model_validator(mode="after")
    def _heads_fit(self) -> CSASettings:
        if self.heads % len(self.rates):
            raise ValueError(
                f"heads={self.heads}: must split evenly over the {len(self.rates)} rates {list(self.rates)} (one head "
                "group per rate)"
            )
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim}: must be a multiple of heads={self.heads}")
        return self

    @property
    def effective_rates(self) -> tuple[int, ...]:
        return self.rates if self.multi_scale else (1,) * len(self.rates)


@contextmanager
def batchnorm_statistics_held(module: nn.Module) -> Iterator[None]:
    """Run `module` in whatever mode it is in, but leave its BatchNorm running statistics as they were (a momentum
    of 0 keeps them; the batch counter is restored)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(norms, saved, strict=True):
            m.momentum = momentum
            if count is not None and m.num_batches_tracked is not None:  # count was saved from this counter
                m.num_batches_tracked.copy_(count)


class ScaleKD(Distiller):
    """The three terms, less those of a part switched off (`sdf.enabled`, `csa.enabled`): `terms` says which."""

    def __init__(
        self,
        student_view: FamilyView,
        teacher_view: FamilyView,
        teacher_scale: float,
        sdf: SDFSettings,
        csa: CSASettings,
        output: OutputDistillationSettings,
    ) -> None:
        super().__init__(student_view, teacher_view, teacher_scale)
        student, teacher = feature_channels(student_view.adapter), feature_channels(teacher_view.adapter)
        self.sdf = (
            ScaleDecoupledFeatureDistillation(
                student.last_stage, teacher.last_stage, sdf.embed_channels, sdf.dilations, sdf.weight_sharing
            )
            if sdf.enabled
            else None
        )
        self.csa = (
            CrossScaleAssistant(
                student.pyramid,
                [teacher.pyramid[pair.teacher] for pair in self.level_pairs],
                dim=csa.dim,
                heads=csa.heads,
                rates=csa.effective_rates,
                query_from=csa.query_from,
                attention=csa.attention,
                residual=csa.residual,
            )
            if csa.enabled
            else None
        )
        self.terms = (*(("loss_feat",) if sdf.enabled else ()), *(("loss_cls", "loss_bbox") if csa.enabled else ()))
        self.output_settings = output
        # The assistant works on the student's own levels: every level (and the RoI stage) compares one to one.
        self.reference_levels = {"dense": list(range(len(student.pyramid))), "roi": [0]}

    @property
    def has_assistant(self) -> bool:
        return self.csa is not None

    def assistant_pyramid(self, batch: DistillationBatch) -> list[torch.Tensor]:
        if self.csa is None:
            raise RuntimeError("compressor.csa.enabled=false: this ScaleKD has no cross-scale assistant")
        teacher = aligned_pyramid(batch.teacher.pyramid, batch.student.pyramid, self.level_pairs)
        return self.csa(batch.student.pyramid, teacher)

    def assistant_head(self, pyramid: list[torch.Tensor]) -> HeadOutputs:
        """The student's head on the assistant's pyramid (shared weights, the student's statistics held)."""
        student = self.student_view.adapter
        with batchnorm_statistics_held(student):
            return student.head(pyramid)

    def assistant_step(self, batch: DistillationBatch) -> DetectionStep:
        """The assistant's detection loss on the ground truth, through the student's head: what its own optimizer
        minimises. Gradients reach the CSA (and the shared head, whose gradient the student's update discards);
        never the teacher, never the student's backbone or neck (the CSA detaches its inputs)."""
        pyramid = self.assistant_pyramid(batch)
        student = self.student_view.adapter
        with batchnorm_statistics_held(student):
            return self.student_view.detection_step(pyramid, student.head(pyramid), batch.targets)

    def losses(self, batch: DistillationBatch) -> dict[str, torch.Tensor]:
        terms = {}
        if self.sdf is not None:
            terms["loss_feat"] = self.sdf(batch.student.last_stage, batch.teacher.last_stage)
        if self.csa is not None:
            with torch.no_grad():
                pyramid = self.assistant_pyramid(batch)
                reference = self.student_view.outputs_on(pyramid, self.assistant_head(pyramid), batch.student_step)
            step = batch.student_step
            terms["loss_cls"], terms["loss_bbox"] = output_distillation(
                step.outputs, reference, step.targets, self.reference_levels, self.output_settings
            )
        return terms

    def student_parameters(self) -> Iterator[nn.Parameter]:
        """The SDF's student side: it trains with the student. The CSA has its own optimizer."""
        return (p for p in (self.sdf.parameters() if self.sdf is not None else ()) if p.requires_grad)

    def assistant_parameters(self) -> Iterator[nn.Parameter]:
        return self.csa.parameters() if self.csa is not None else iter(())
