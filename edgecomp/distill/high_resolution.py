"""The high-resolution teacher: a detector trained and run at `teacher_scale` x the student's resolution.

ScaleKD's teacher is a high-resolution model ("we only consider using high-resolution images X^hr for the teacher
model"; Table 4's teacher is the same Mask R-CNN at 800 px against the student's 400 px): its advantage on small
objects is that it sees them `teacher_scale` times larger, with the detail the student's smaller input has lost.
Two ways to give it that input (`compressor.teacher_input`):

- `native` (the default): the teacher's own images, letterboxed from the stored image at `teacher_scale` x the input
  size (edgecomp.data.detection.detection_datamodule: two-resolution batches). Its detector is simply built for that
  input size (`with_input_size`) and trained on the data letterboxed to it, like any detector.
- `upsampled` (the earlier reading, kept as an ablation): the student's batch upsampled bilinearly -- the same pixels
  on a finer grid, no detail the student lacks. `UpsampledInputDetector` wraps the teacher's detector (built for
  `teacher_scale` x the data's image size) and upsamples each batch (and scales its boxes) before the detector's own
  loss, detections and network, so that the ordinary training (edgecomp.lit.training) trains it on the data the
  student trains on; the distillers then feed the detector the same upsampling (edgecomp.distill.alignment).

Either way a teacher trained at the student's resolution and shown larger images would see objects at sizes it never
learnt, so the teacher is trained on what it will see.
"""

from __future__ import annotations

import os
from typing import Any, cast

import torch
from omegaconf import DictConfig, OmegaConf

from edgecomp.config import build
from edgecomp.distill.alignment import teacher_input
from edgecomp.errors import CheckpointError
from edgecomp.models.checkpoint import load_weights
from edgecomp.models.detection.adapter import DetectorAdapter, DetectorFeatures, HeadOutputs


class UpsampledInputDetector(DetectorAdapter):
    """`detector` (built for input `scale` x S) behind the edgecomp conventions at input S: images (N, 3, S, S) are
    upsampled bilinearly by `scale` and boxes scaled by it on the way in (loss), back on the way out (predict)."""

    def __init__(self, detector: DetectorAdapter, scale: float, name: str | None = None) -> None:
        size = detector.input_size / scale
        if size != int(size):
            raise ValueError(f"the detector's input {detector.input_size} is not {scale} x a whole image size")
        super().__init__(detector.num_classes, int(size))
        self.detector = detector
        self.scale = float(scale)
        self.name = name or getattr(detector, "name", type(detector).__name__)

    def features(self, images: torch.Tensor) -> DetectorFeatures:
        return self.detector.features(teacher_input(images, self.scale))

    def head(self, pyramid: list[torch.Tensor]) -> HeadOutputs:
        return self.detector.head(pyramid)

    def loss(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        scaled = [{**target, "boxes": target["boxes"] * self.scale} for target in targets]
        return self.detector.loss(teacher_input(images, self.scale), scaled)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        detections = self.detector.predict(teacher_input(images, self.scale))
        return [{**detection, "boxes": detection["boxes"] / self.scale} for detection in detections]


def upsampled_input_detector(detector: DetectorAdapter, scale: float, name: str) -> UpsampledInputDetector:
    """Hydra entry point (`high_resolution_config`): `detector` arrives instantiated."""
    return UpsampledInputDetector(detector, scale, name)


def high_resolution_config(detector: DictConfig, scale: float) -> DictConfig:
    """The config of `detector` (a detector config such as cfg.teacher) trained and run at `scale` x its input size
    behind `UpsampledInputDetector`, named `<name>_x<scale>` so that its training run has a folder of its own."""
    # A DictConfig converts to a dict, keyed by strings (the YAML mapping's keys).
    inner = cast(dict[str, Any], OmegaConf.to_container(detector, resolve=True))
    inner["input_size"] = int(round(inner["input_size"] * scale))
    return OmegaConf.create(
        {
            "_target_": f"{__name__}.upsampled_input_detector",
            "detector": inner,
            "scale": float(scale),
            "name": f"{inner['name']}_x{scale:g}",
        }
    )


def with_input_size(detector: DictConfig, size: int) -> DictConfig:
    """A copy of the detector config `detector` built for `size` x `size` inputs (a native high-resolution teacher)."""
    node = OmegaConf.create(cast(dict[str, Any], OmegaConf.to_container(detector, resolve=True)))
    node.input_size = int(size)
    return node


def load_teacher(config: DictConfig, checkpoint: str | os.PathLike) -> DetectorAdapter:
    """`config`'s detector with the weights of `checkpoint`: the detector's own, or those of an UpsampledInputDetector
    around it (what training a high-resolution teacher writes). A detector's weights do not depend on its input size."""
    teacher = build(config)
    try:
        return load_weights(teacher, checkpoint)
    except CheckpointError as plain:
        try:
            load_weights(UpsampledInputDetector(teacher, 1.0), checkpoint)  # loads into `teacher` itself
        except CheckpointError:
            raise plain from None
        return teacher
