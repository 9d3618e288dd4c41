"""`compressor=fitnet`: FitNet-style feature distillation of a detector (ScaleKD's Table 5 baseline), in the
detection distillation framework (edgecomp.compress.distillation.detection_distillation): L = alpha L_feat + L_det, L_feat the
hint loss of edgecomp.distill.fitnet_distiller on the last backbone stage or on every pyramid level (`features`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from edgecomp.compress.distillation.detection_distillation import (
    DetectionDistillation,
    DetectionDistillationSettings,
    LossWeight,
)
from edgecomp.distill.families import FamilyView
from edgecomp.distill.fitnet_distiller import FitNet


class FitNetSettings(DetectionDistillationSettings):
    alpha: LossWeight
    features: Literal["last_stage", "pyramid"] = Field(
        "last_stage", description="last_stage (the backbone's last stage) or pyramid (every pyramid level)"
    )


class FitNetDistillation(DetectionDistillation):
    settings_class = FitNetSettings
    options: FitNetSettings

    def build_distiller(self, student: FamilyView, teacher: FamilyView) -> FitNet:
        return FitNet(student, teacher, self.teacher_scale, self.options.features)

    def method_settings(self) -> dict[str, Any]:
        return {"features": self.options.features}
