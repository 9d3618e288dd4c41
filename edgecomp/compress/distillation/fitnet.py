"""`compressor=fitnet`: FitNet-style feature distillation of a detector (ScaleKD's Table 5 baseline), in the
detection distillation framework (edgecomp.compress.distillation.detection_distillation): L = alpha L_feat + L_det, L_feat the
hint loss of edgecomp.distill.fitnet_distiller on the last backbone stage or on every pyramid level (`features`)."""

from __future__ import annotations

from typing import Any

from edgecomp.compress.distillation.detection_distillation import DetectionDistillation
from edgecomp.distill.families import FamilyView
from edgecomp.distill.fitnet_distiller import FitNet
from edgecomp.errors import ConfigError


class FitNetDistillation(DetectionDistillation):
    weight_keys = ("alpha",)

    def __init__(self, name: str, features: str = "last_stage", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        if features not in ("last_stage", "pyramid"):
            raise ConfigError(f"compressor.features={features!r}: expected last_stage or pyramid")
        self.features = features

    def build_distiller(self, student: FamilyView, teacher: FamilyView) -> FitNet:
        return FitNet(student, teacher, self.teacher_scale, self.features)

    def method_settings(self) -> dict[str, Any]:
        return {"features": self.features}
