"""`compressor=od2017`: Chen et al. 2017 output distillation of a detector from its teacher's head outputs (ScaleKD's
Table 5 "OD" baseline, and its Table 1 perturbation study), in the detection distillation framework
(edgecomp.compress.distillation.detection_distillation): L = beta L_cls + gamma L_bbox + L_det (edgecomp.distill.od2017_distiller)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from edgecomp.compress.distillation.detection_distillation import (
    DetectionDistillation,
    DetectionDistillationSettings,
    LossWeight,
)
from edgecomp.distill.families import FamilyView
from edgecomp.distill.od2017_distiller import OutputDistillation
from edgecomp.distill.output_losses import OutputDistillationSettings, OutputLossSettings, PerturbPx
from edgecomp.errors import ConfigError


class OutputDistillationOptions(DetectionDistillationSettings):
    """What a distiller of head outputs takes (Chen et al.'s and ScaleKD's L_cls, L_bbox)."""

    beta: LossWeight
    gamma: LossWeight
    output: OutputLossSettings = Field(
        default_factory=OutputLossSettings,
        description="a mapping of temperature, background_weight, bound_margin, bbox_loss, box_units",
    )
    perturb_px: PerturbPx = 0.0

    @property
    def output_distillation(self) -> OutputDistillationSettings:
        """`output` and `perturb_px`, as the distillers take them."""
        return OutputDistillationSettings(**self.output.model_dump(), perturb_px=self.perturb_px)


class ChenOutputDistillation(DetectionDistillation):
    settings_class = OutputDistillationOptions
    options: OutputDistillationOptions

    def __init__(self, name: str, **settings: Any) -> None:
        super().__init__(name, **settings)
        self.output = self.options.output_distillation

    def build_distiller(self, student: FamilyView, teacher: FamilyView) -> OutputDistillation:
        try:
            return OutputDistillation(student, teacher, self.teacher_scale, self.output)
        except ValueError as err:  # no level of a shared effective stride: nothing to distil
            raise ConfigError(f"compressor.teacher_scale={self.teacher_scale}: {err}") from None

    def method_settings(self) -> dict[str, Any]:
        return {"output": self.output.model_dump()}
