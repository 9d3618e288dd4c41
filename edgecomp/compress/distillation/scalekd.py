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

import dataclasses
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig

from edgecomp.compress.distillation.detection_distillation import DetectionDistillation
from edgecomp.compress.distillation.od2017 import parse_output_settings
from edgecomp.config import build
from edgecomp.distill.csa import ATTENTIONS, RESIDUALS
from edgecomp.distill.families import FamilyView
from edgecomp.distill.scalekd_distiller import CSASettings, ScaleKD, SDFSettings
from edgecomp.errors import ConfigError
from edgecomp.lit.scalekd_module import ScaleKDModule


def parse_sdf(sdf: Mapping[str, Any] | None) -> SDFSettings:
    sdf = dict(sdf or {})
    known = {f.name for f in dataclasses.fields(SDFSettings)}
    if unknown := sorted(set(sdf) - known):
        raise ConfigError(f"compressor.sdf has unknown keys {unknown}: expected {sorted(known)}")
    settings = SDFSettings(**{k: tuple(v) if k == "dilations" else v for k, v in sdf.items()})
    for key in ("enabled", "weight_sharing"):
        if not isinstance(getattr(settings, key), bool):
            raise ConfigError(f"compressor.sdf.{key}={getattr(settings, key)}: expected true or false")
    if settings.embed_channels < 1:
        raise ConfigError(f"compressor.sdf.embed_channels={settings.embed_channels}: must be >= 1")
    if not settings.dilations or any(int(d) != d or d < 1 for d in settings.dilations):
        raise ConfigError(
            f"compressor.sdf.dilations={list(settings.dilations)}: whole numbers >= 1 (the paper: 1, 2, 3)"
        )
    return settings


def parse_csa(csa: Mapping[str, Any] | None) -> CSASettings:
    csa = dict(csa or {})
    csa.pop("optimizer", None)  # built separately
    known = {f.name for f in dataclasses.fields(CSASettings)}
    if unknown := sorted(set(csa) - known):
        raise ConfigError(f"compressor.csa has unknown keys {unknown}: expected {sorted([*known, 'optimizer'])}")
    settings = CSASettings(**{k: tuple(v) if k == "rates" else v for k, v in csa.items()})
    if settings.query_from not in ("student", "teacher"):
        raise ConfigError(f"compressor.csa.query_from={settings.query_from}: expected student or teacher")
    for key in ("enabled", "multi_scale"):
        if not isinstance(getattr(settings, key), bool):
            raise ConfigError(f"compressor.csa.{key}={getattr(settings, key)}: expected true or false")
    if settings.attention not in ATTENTIONS:
        raise ConfigError(
            f"compressor.csa.attention={settings.attention}: expected msc (the paper's multi-scale cross-attention) "
            "or plain (standard multi-head cross-attention)"
        )
    if settings.residual not in RESIDUALS:
        raise ConfigError(
            f"compressor.csa.residual={settings.residual}: expected teacher (a projection of the teacher's feature), "
            "student (the student's feature) or none"
        )
    if not settings.rates or any(int(r) != r or r < 1 for r in settings.rates):
        raise ConfigError(
            f"compressor.csa.rates={list(settings.rates)}: whole down-sampling rates >= 1, one per head group"
        )
    if settings.heads < 1 or settings.heads % len(settings.rates):
        raise ConfigError(
            f"compressor.csa.heads={settings.heads}: must split evenly over the {len(settings.rates)} rates "
            f"{list(settings.rates)} (one head group per rate)"
        )
    if settings.dim % settings.heads:
        raise ConfigError(
            f"compressor.csa.dim={settings.dim}: must be a multiple of compressor.csa.heads={settings.heads}"
        )
    return settings


class ScaleKDDistillation(DetectionDistillation):
    weight_keys = ("alpha", "beta", "gamma")
    module_class = ScaleKDModule

    def __init__(
        self,
        name: str,
        sdf: Mapping[str, Any] | None = None,
        csa: Mapping[str, Any] | None = None,
        output: Mapping[str, Any] | None = None,
        perturb_px: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, **kwargs)
        self.sdf = parse_sdf(sdf)
        self.csa = parse_csa(csa)
        self.output = parse_output_settings(output, perturb_px)
        optimizer = (csa or {}).get("optimizer")
        if optimizer is None:
            raise ConfigError(
                "compressor.csa.optimizer: the assistant's optimizer is required (paper: Adam 3e-4, wd 1e-4)"
            )
        self.assistant_optimizer = optimizer

    def build_distiller(self, student: FamilyView, teacher: FamilyView) -> ScaleKD:
        return ScaleKD(student, teacher, self.teacher_scale, self.sdf, self.csa, self.output)

    def module_arguments(self) -> dict[str, Any]:
        optimizer = self.assistant_optimizer
        return {"assistant_optimizer": build(optimizer) if isinstance(optimizer, DictConfig) else optimizer}

    def method_settings(self) -> dict[str, Any]:
        optimizer = self.assistant_optimizer
        described = (
            {k: v for k, v in optimizer.items() if k != "_partial_"}
            if isinstance(optimizer, Mapping)
            else {"_target_": getattr(optimizer, "func", optimizer).__name__, **getattr(optimizer, "keywords", {})}
        )
        return {
            "sdf": dataclasses.asdict(self.sdf),
            "csa": {**dataclasses.asdict(self.csa), "effective_rates": list(self.csa.effective_rates),
                    "optimizer": described},
            "output": dataclasses.asdict(self.output),
        }  # fmt: skip
