"""The teacher's view of a batch: its input at `teacher_scale` x the student's resolution, and its pyramid levels
paired with the student's by stride.

ScaleKD's teacher sees high-resolution images (section 3, "Definition"; section 4.1: "2x of standard input resolution
for all experiments for the teacher model"), the student the standard ones. By default (`compressor.teacher_input=
native`) the data pipeline delivers both: the teacher's images are letterboxed from the stored image at its own
resolution (edgecomp.data.detection.detection_datamodule, `with_teacher_scale`), so the teacher sees the detail the
student's input has lost. `teacher_input=upsampled` keeps the earlier reading as an ablation: `teacher_input` below
upsamples the student's batch bilinearly, the same pixels on a finer grid. In both the teacher's content is exactly
`teacher_scale` x the student's, so the pairing below holds.

Pairing the levels. At `teacher_scale` s the teacher's level of stride t covers t / s pixels of the student's image
per cell: it is the student's level of stride t / s, same grid, and -- for a teacher trained on that scale -- the
same object sizes (a detector assigns objects to levels by their size in its input pixels). So each student level
is paired with the teacher level of the same *effective* stride (t / s). For such exact pairs the raw head outputs
compare as they are: anchor deltas are relative to anchors that scale with the stride, and FCOS/YOLO distances are
in stride units. A student level without an exact partner (the coarsest ones when s > 1: a 2x teacher's P7 is the
student's P6) is paired with the teacher level of the nearest effective stride, resized to the student's grid: good
enough as a feature to attend to or mimic, but not comparable as head outputs, so output distillation skips it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def teacher_input(images: torch.Tensor, scale: float) -> torch.Tensor:
    """The student's batch as an `upsampled` teacher sees it: upsampled bilinearly by `scale` (unchanged at 1)."""
    if scale == 1:
        return images
    size = round(images.shape[-1] * scale)
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


@dataclass(frozen=True)
class LevelPair:
    """The teacher level paired with one student level; `exact`: same effective stride (and grid)."""

    teacher: int
    exact: bool


def pair_levels(student_strides: tuple[int, ...], teacher_strides: tuple[int, ...], scale: float) -> list[LevelPair]:
    """For each student level (finest first), the teacher level of the nearest effective stride (its stride / scale);
    on a tie, the finer one (more detail, the reason for a high-resolution teacher)."""
    pairs = []
    for stride in student_strides:
        distances = [abs(math.log2(t / scale) - math.log2(stride)) for t in teacher_strides]
        nearest = min(range(len(teacher_strides)), key=lambda index: (distances[index], index))
        pairs.append(LevelPair(nearest, exact=distances[nearest] < 1e-9))
    return pairs


def grid_size(feature: torch.Tensor) -> tuple[int, int]:
    """The (H, W) of a feature map (..., H, W)."""
    height, width = feature.shape[-2:]
    return height, width


def to_grid(feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`feature` (N, C, h, w) on an (H, W) grid: average-pooled when it is at least as fine (each cell the mean of
    the finer cells it covers), bilinearly interpolated when it is coarser; unchanged when it is already (H, W)."""
    if tuple(feature.shape[-2:]) == tuple(size):
        return feature
    if feature.shape[-2] >= size[0] and feature.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(feature, size)
    return F.interpolate(feature, size=size, mode="bilinear", align_corners=False)


def aligned_pyramid(
    teacher_pyramid: list[torch.Tensor], student_pyramid: list[torch.Tensor], pairs: list[LevelPair]
) -> list[torch.Tensor]:
    """The teacher's pyramid re-indexed to the student's levels (`pairs`) and put on each student level's grid."""
    return [
        to_grid(teacher_pyramid[pair.teacher], grid_size(level))
        for pair, level in zip(pairs, student_pyramid, strict=True)
    ]
