"""Scale-decoupled feature distillation (SDF): ScaleKD section 3.1 and Fig. 2, giving L_feat of eq. 7.

On the last backbone stage of teacher (Z^T) and student (Z^S):

1. an adapter (a 1x1 convolution: the paper's "MLP" per position) maps the student's channels to the teacher's
   (eq. 1's f(.));
2. a residual bottleneck block -- 1x1, 3x3 dilated, 1x1, plus the skip, as in ResNet -- runs as three branches whose
   3x3 convolution has dilation 1, 2 and 3 ("the kernel with a small dilated rate focuses on small objects and vice
   versa"). With `weight_sharing` (the default, the paper's choice) the three branches use ONE set of weights at
   three dilations (the paper's weight-sharing SDF, after single-path NAS); without it each branch has its own
   (Table 7's ablation);
3. each branch's output is flattened by its own small MLP (two 1x1 convolutions per position, then flattened), and
   the three are concatenated into one embedding;
4. one L2 loss compares the teacher's and the student's embeddings (not one loss per branch: "a sole l2 loss").

Why the teacher side cannot collapse (the paper does not say; docs/methods/scalekd.md gives the reading edgecomp
takes). If the teacher-side SDF were trained by L_feat alone, a constant embedding on both sides would make L_feat
zero whatever the features are: the only signal L_feat gives the teacher side is "be predictable", which a constant
satisfies best. Nothing else in ScaleKD trains it
(the teacher is frozen; no task loss reaches its SDF). So here the teacher-side embedding is a *fixed* function of
the teacher's feature: the student-side SDF's architecture and initial weights ("the student's module mirrors the
teacher's counterpart"), frozen. Then L_feat = ||E_S(adapter(Z^S)) - E_T(Z^T)||^2 with E_T fixed: for any student
side that outputs a constant c, L_feat >= mean ||E_T(Z^T) - mean E_T(Z^T)||^2, the variance of the teacher's
embeddings over the batch, which no student parameter can change and which is > 0 as soon as two images' teacher
features differ (tests/unit/test_scalekd.py measures both). The student side (adapter, bottleneck, MLPs) trains with the
student. The multi-scale decoupling comes from the architecture (three receptive fields over one feature), which a
fixed E_T keeps.

Scale: both sides' inputs are standardised per image (a parameter-free GroupNorm with one group: zero mean, unit
variance over channels and positions), so L_feat's size does not depend on the teacher backbone's activation scale
(ResNet-50 C5 vs YOLOv8s SPPF) and the paper's alpha means the same for every teacher. The teacher's feature is put
on the student's grid first (average-pooled: a 2x teacher's last stage is twice as fine). L_feat is the squared
distance of the concatenated per-position embeddings (3 x `embed_channels` values), summed over them and averaged
over positions and images.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgecomp.distill.alignment import grid_size, to_grid


def standardise(feature: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per image over channels and positions (no parameters)."""
    return F.group_norm(feature, 1)


class DilatedBottleneck(nn.Module):
    """ResNet's bottleneck (1x1 reduce, 3x3, 1x1 expand, ReLUs, identity skip) whose 3x3 convolution runs at the
    dilation it is called with, so one set of weights can serve several dilations. No normalisation layers: the
    teacher-side copy is frozen, and a BatchNorm's statistics would keep moving."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, width, 1)
        self.spatial = nn.Conv2d(width, width, 3)  # its padding and dilation are set per call
        self.expand = nn.Conv2d(width, channels, 1)

    def forward(self, x: torch.Tensor, dilation: int) -> torch.Tensor:
        y = F.relu(self.reduce(x))
        y = F.relu(F.conv2d(y, self.spatial.weight, self.spatial.bias, padding=dilation, dilation=dilation))
        return x + self.expand(y)


class ScaleDecoupledEmbedding(nn.Module):
    """Fig. 2 after the adapter: the bottleneck at each dilation (one shared set of weights, or one per branch),
    each branch flattened by its own MLP, the branches concatenated: (N, C, h, w) -> (N, branches * E, h, w)."""

    def __init__(
        self,
        channels: int,
        embed_channels: int,
        dilations: tuple[int, ...] = (1, 2, 3),
        weight_sharing: bool = True,
        bottleneck_width: int | None = None,
    ) -> None:
        super().__init__()
        width = bottleneck_width or max(channels // 4, 1)  # ResNet's bottleneck ratio
        self.dilations = tuple(dilations)
        self.weight_sharing = weight_sharing
        self.bottlenecks = nn.ModuleList(
            [DilatedBottleneck(channels, width) for _ in range(1 if weight_sharing else len(self.dilations))]
        )
        self.mlps = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(channels, embed_channels, 1), nn.ReLU(), nn.Conv2d(embed_channels, embed_channels, 1))
                for _ in self.dilations
            ]
        )  # fmt: skip

    def bottleneck(self, branch: int) -> DilatedBottleneck:
        # A ModuleList's item is typed as any Module; these are all DilatedBottlenecks.
        return cast(DilatedBottleneck, self.bottlenecks[0 if self.weight_sharing else branch])

    def branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each branch's embedding (N, E, h, w): its MLP on the bottleneck at its dilation."""
        return [
            mlp(self.bottleneck(branch)(x, dilation))
            for branch, (dilation, mlp) in enumerate(zip(self.dilations, self.mlps, strict=True))
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.branches(x), dim=1)


class ScaleDecoupledFeatureDistillation(nn.Module):
    """L_feat between the student's and the teacher's last backbone stage (see the module docstring).

    `student_embedding` (with `adapter`) trains with the student; `teacher_embedding` is its frozen initial copy.
    """

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        embed_channels: int = 128,
        dilations: tuple[int, ...] = (1, 2, 3),
        weight_sharing: bool = True,
    ) -> None:
        super().__init__()
        self.adapter = nn.Conv2d(student_channels, teacher_channels, 1)
        self.student_embedding = ScaleDecoupledEmbedding(teacher_channels, embed_channels, dilations, weight_sharing)
        self.teacher_embedding = copy.deepcopy(self.student_embedding).requires_grad_(False)

    def embed_student(self, student_feature: torch.Tensor) -> torch.Tensor:
        return self.student_embedding(standardise(self.adapter(student_feature)))

    @torch.no_grad()
    def embed_teacher(self, teacher_feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.teacher_embedding(standardise(to_grid(teacher_feature, size)))

    @staticmethod
    def distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Squared L2 distance of the per-position embeddings, averaged over positions and images."""
        n, _, h, w = student.shape
        return (student - teacher).pow(2).sum() / (n * h * w)

    def forward(self, student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
        student = self.embed_student(student_feature)
        return self.distance(student, self.embed_teacher(teacher_feature, grid_size(student)))
