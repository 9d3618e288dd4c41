"""`compressor=od2017`: Chen et al. 2017 output distillation of a detector from its teacher's head outputs (ScaleKD's
Table 5 "OD" baseline, and its Table 1 perturbation study), in the detection distillation framework
(edgecomp.compress.distillation.detection_distillation): L = beta L_cls + gamma L_bbox + L_det (edgecomp.distill.od2017_distiller)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from edgecomp.compress.distillation.detection_distillation import DetectionDistillation
from edgecomp.distill.families import FamilyView
from edgecomp.distill.od2017_distiller import OutputDistillation
from edgecomp.distill.output_losses import BBOX_LOSSES, BOX_UNITS, OutputDistillationSettings
from edgecomp.errors import ConfigError


def parse_output_settings(output: Mapping[str, Any] | None, perturb_px: float) -> OutputDistillationSettings:
    """`compressor.output` (temperature, background_weight, bound_margin, bbox_loss, box_units) and
    `compressor.perturb_px`, checked."""
    output = dict(output or {})
    known = {f.name for f in dataclasses.fields(OutputDistillationSettings)} - {"perturb_px"}
    if unknown := sorted(set(output) - known):
        raise ConfigError(f"compressor.output has unknown keys {unknown}: expected {sorted(known)}")
    if output.get("temperature", 1.0) <= 0:
        raise ConfigError(f"compressor.output.temperature={output['temperature']}: must be > 0 (Chen et al.: 1)")
    if output.get("background_weight", 1.5) <= 0:
        raise ConfigError(f"compressor.output.background_weight={output['background_weight']}: must be > 0")
    if output.get("bound_margin", 0.0) < 0:
        raise ConfigError(f"compressor.output.bound_margin={output['bound_margin']}: must be >= 0")
    for key, allowed, meaning in (
        ("bbox_loss", BBOX_LOSSES, "bounded (Chen et al.), l2 or smooth_l1 (ScaleKD's eq. 2, direct regression)"),
        ("box_units", BOX_UNITS, "relative (anchor-delta units in every family) or native (each family's own)"),
    ):
        if key in output and output[key] not in allowed:
            raise ConfigError(f"compressor.output.{key}={output[key]}: expected {meaning}")
    if perturb_px is None or perturb_px < 0:
        raise ConfigError(f"compressor.perturb_px={perturb_px}: a diagonal shift in pixels, >= 0 (Table 1: 6, 12)")
    return OutputDistillationSettings(
        **{k: v if k in ("bbox_loss", "box_units") else float(v) for k, v in output.items()},
        perturb_px=float(perturb_px),
    )


class ChenOutputDistillation(DetectionDistillation):
    weight_keys = ("beta", "gamma")

    def __init__(
        self, name: str, output: Mapping[str, Any] | None = None, perturb_px: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(name, **kwargs)
        self.output = parse_output_settings(output, perturb_px)

    def build_distiller(self, student: FamilyView, teacher: FamilyView) -> OutputDistillation:
        try:
            return OutputDistillation(student, teacher, self.teacher_scale, self.output)
        except ValueError as err:  # no level of a shared effective stride: nothing to distil
            raise ConfigError(f"compressor.teacher_scale={self.teacher_scale}: {err}") from None

    def method_settings(self) -> dict[str, Any]:
        return {"output": dataclasses.asdict(self.output)}
