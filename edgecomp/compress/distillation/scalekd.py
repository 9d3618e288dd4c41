"""`compressor=scalekd`: ScaleKD (Zhu et al., CVPR 2023), the scale-aware detection distiller, in the detection
distillation framework (edgecomp.compress.distillation.detection_distillation):

    L = alpha L_feat + beta L_cls + gamma L_bbox + L_det                 (eq. 7)

L_feat from the scale-decoupled feature distillation (edgecomp.distill.sdf), L_cls and L_bbox from the cross-scale
assistant's head outputs (edgecomp.distill.csa, output_losses), the assistant trained on the ground truth through the
student's head by its own optimizer before each student update (edgecomp.lit.scalekd_module). The teacher sees
`teacher_scale` x the student's resolution (edgecomp.distill.alignment). Paper weights: one-stage 0.01 / 0.2 / 0.05
(conf/compressor/scalekd.yaml), two-stage 0.07 / 0.5 / 0.2 (scalekd_two_stage.yaml).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import Field

from edgecomp.compress.distillation.detection_distillation import DetectionDistillation, LossWeight
from edgecomp.compress.distillation.od2017 import OutputDistillationOptions
from edgecomp.config import build
from edgecomp.distill.families import FamilyView
from edgecomp.distill.scalekd_distiller import CSASettings, ScaleKD, SDFSettings
from edgecomp.lit.scalekd_module import ScaleKDModule


class AssistantSettings(CSASettings):
    """`compressor.csa`: the cross-scale assistant and its own optimizer."""

    optimizer: dict[str, Any] | Callable[..., Any] = Field(
        description="the assistant's optimizer, a torch optimizer's config with _partial_: true (the paper: Adam "
        "3e-4, weight decay 1e-4)"
    )


class ScaleKDSettings(OutputDistillationOptions):
    alpha: LossWeight
    sdf: SDFSettings = Field(
        default_factory=SDFSettings,
        description="a mapping of enabled, weight_sharing, embed_channels, dilations",
    )
    csa: AssistantSettings = Field(
        description="a mapping of enabled, attention, residual, multi_scale, rates, heads, dim, query_from, optimizer"
    )


class ScaleKDDistillation(DetectionDistillation):
    settings_class = ScaleKDSettings
    options: ScaleKDSettings
    module_class = ScaleKDModule

    def __init__(self, name: str, **settings: Any) -> None:
        super().__init__(name, **settings)
        self.output = self.options.output_distillation

    def build_distiller(self, student: FamilyView, teacher: FamilyView) -> ScaleKD:
        return ScaleKD(student, teacher, self.teacher_scale, self.options.sdf, self.options.csa, self.output)

    def module_arguments(self) -> dict[str, Any]:
        optimizer = self.options.csa.optimizer
        return {"assistant_optimizer": build(optimizer) if isinstance(optimizer, Mapping) else optimizer}

    def method_settings(self) -> dict[str, Any]:
        sdf, csa = self.options.sdf, self.options.csa
        optimizer = csa.optimizer
        described = (
            {k: v for k, v in optimizer.items() if k != "_partial_"}
            if isinstance(optimizer, Mapping)
            else {"_target_": getattr(optimizer, "func", optimizer).__name__, **getattr(optimizer, "keywords", {})}
        )
        return {
            "sdf": sdf.model_dump(),
            "csa": {**csa.model_dump(exclude={"optimizer"}), "effective_rates": list(csa.effective_rates),
                    "optimizer": described},
            "output": self.output.model_dump(),
        }  # fmt: skip
