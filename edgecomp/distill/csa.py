"""The cross-scale assistant (CSA): ScaleKD section 3.2, eqs. 3-6 and Fig. 3.

At every student pyramid level a multi-scale cross-attention combines the student's feature with the teacher's
(the teacher's level of the same effective stride, on the student's grid: edgecomp.distill.alignment). Per head
group i, with down-sampling rate r_i:

    Q_i = F^S W_i^Q                                        (eq. 3)
    K_i = MSC(F^T, r_i) W_i^K,  V_i = MSC(F^T, r_i) W_i^V   (eq. 4)
    V_i = V_i + P(V_i)                                     (eq. 5)
    h_i = softmax(Q_i K_i^T / sqrt(d_h)) V_i               (eq. 6, parenthesis corrected: docs/methods/scalekd.md)

- which side gives the query follows the equations (the student's; the paper's prose says the teacher's):
  `query_from="teacher"` swaps the two sides (query from the teacher, key and value from the student);
- MSC(F, r) aggregates each r x r patch of F into one token -- average pooling to ceil(h / r) x ceil(w / r) tokens
  (so a level smaller than r still has one) -- followed by the paper's "MLP layer for aggregation" (Linear,
  LayerNorm, GELU, per token, as Shunted Transformer's multi-scale token aggregation, which this attention follows).
  Each group has its own rate, so different heads see the teacher at different scales; `multi_scale=False` sets every
  rate to 1 (the aggregation MLP and P stay);
- P is a depth-wise 3x3 convolution over each group's value tokens on their (pooled) grid;
- the heads are concatenated and projected to the student level's channels.

`attention="plain"` (Table 6's plain cross-attention) replaces all of that with standard multi-head cross-attention:
Q, K, V linear projections of the (LayerNorm-ed) query and key/value tokens, softmax(Q K^T / sqrt(d_h)) V per head,
the heads concatenated and projected -- exactly `nn.MultiheadAttention` on the same weights, with no aggregation MLP,
no pooling and no P(V).

The residual added to the attention's output (`residual`; the paper states none):
- `teacher` (the default): the teacher's feature projected to the student's channels (a 1x1 convolution), so the
  assistant's output is the teacher's knowledge at each student position, in a form the student's head reads, refined
  by the attention. Its norm is several times the attention's at the start (3-8x on RetinaNet P3-P5), which can hide
  what the attention contributes: an ablation of the attention (Table 6) is cleaner with `none`;
- `student`: the student's own feature (the usual residual on the query side): an assistant that starts as the
  student and has little reason to become anything else (on synthetic_sod its detection loss stayed within 1 % of the
  student's over the first 60 steps);
- `none`: the attention alone, as the paper's equations write it.

Its output (one feature per student level) runs through the student's detection head, shared, and is trained on the
ground truth with the detection loss by its own optimizer (edgecomp.lit.scalekd_module), never by the student's losses.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgecomp.distill.alignment import grid_size

QuerySide = Literal["student", "teacher"]
Attention = Literal["msc", "plain"]
Residual = Literal["teacher", "student", "none"]
ATTENTIONS: tuple[str, ...] = ("msc", "plain")
RESIDUALS: tuple[str, ...] = ("teacher", "student", "none")


def aggregated_grid(size: tuple[int, int], rate: int) -> tuple[int, int]:
    """The token grid MSC(F, r) leaves of an (h, w) feature: ceil(h / r) x ceil(w / r)."""
    return math.ceil(size[0] / rate), math.ceil(size[1] / rate)


def tokens(feature: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, h * w, C)."""
    return feature.flatten(2).transpose(1, 2)


class MultiScaleCrossAttention(nn.Module):
    """Eqs. 3-6 on one pyramid level: `heads` heads of width `dim / heads`, split evenly into one group per rate."""

    def __init__(
        self,
        query_channels: int,
        key_value_channels: int,
        out_channels: int,
        dim: int,
        heads: int,
        rates: tuple[int, ...],
    ) -> None:
        super().__init__()
        if heads % len(rates) or dim % heads:
            raise ValueError(f"{heads} heads must split evenly over {len(rates)} rates, and dim={dim} over the heads")
        self.rates = tuple(rates)
        self.heads = heads
        self.head_dim = dim // heads
        self.heads_per_group = heads // len(rates)
        group_dim = self.heads_per_group * self.head_dim
        self.query_norm = nn.LayerNorm(query_channels)
        self.query = nn.Linear(query_channels, dim)  # W^Q for all heads
        self.aggregate = nn.ModuleList(  # MSC's MLP, one per rate
            [
                nn.Sequential(nn.Linear(key_value_channels, key_value_channels), nn.LayerNorm(key_value_channels), nn.GELU())
                for _ in rates
            ]
        )  # fmt: skip
        self.keys = nn.ModuleList([nn.Linear(key_value_channels, group_dim) for _ in rates])  # W_i^K
        self.values = nn.ModuleList([nn.Linear(key_value_channels, group_dim) for _ in rates])  # W_i^V
        self.value_projections = nn.ModuleList(  # P, depth-wise
            [nn.Conv2d(group_dim, group_dim, 3, padding=1, groups=group_dim) for _ in rates]
        )
        self.output = nn.Linear(dim, out_channels)

    def keys_and_values(self, key_value: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per head group i: K_i and V_i, each (N, heads_per_group, tokens_i, head_dim), tokens_i the
        ceil(h / r_i) x ceil(w / r_i) grid of MSC(F, r_i) (eqs. 4 and 5)."""
        n = key_value.shape[0]
        result = []
        for rate, aggregate, key, value, projection in zip(
            self.rates, self.aggregate, self.keys, self.values, self.value_projections, strict=True
        ):
            grid = aggregated_grid(grid_size(key_value), rate)
            pooled = aggregate(tokens(F.adaptive_avg_pool2d(key_value, grid)))  # MSC(F, r_i): (N, tokens, C)
            k, v = key(pooled), value(pooled)  # (N, tokens, group_dim)
            v_grid = v.transpose(1, 2).reshape(n, -1, *grid)
            v = v + tokens(projection(v_grid))  # eq. 5
            split = (n, -1, self.heads_per_group, self.head_dim)
            result.append((k.view(split).transpose(1, 2), v.view(split).transpose(1, 2)))
        return result

    def forward(self, query: torch.Tensor, key_value: torch.Tensor) -> torch.Tensor:
        """`query` (N, C_q, h, w) and `key_value` (N, C_kv, h', w') -> (N, out_channels, h, w): the heads' outputs,
        concatenated and projected."""
        n, _, h, w = query.shape
        q = self.query(self.query_norm(tokens(query)))  # eq. 3: (N, h * w, dim)
        q = q.view(n, h * w, self.heads, self.head_dim).transpose(1, 2)  # (N, heads, h * w, head_dim)
        groups = q.split(self.heads_per_group, dim=1)
        attended = [
            F.scaled_dot_product_attention(q_i, k_i, v_i)  # eq. 6: softmax(Q K^T / sqrt(d_h)) V
            for q_i, (k_i, v_i) in zip(groups, self.keys_and_values(key_value), strict=True)
        ]
        heads = torch.cat(attended, dim=1).transpose(1, 2).reshape(n, h * w, -1)
        return self.output(heads).transpose(1, 2).reshape(n, -1, h, w)


class PlainCrossAttention(nn.Module):
    """Standard multi-head cross-attention on one pyramid level (Table 6's plain cross-attention): the query and
    key/value tokens LayerNorm-ed (the pre-norm of a transformer block), then `attend` -- `nn.MultiheadAttention`'s
    computation, written with separate projections so that the query, key/value and output widths may differ."""

    def __init__(self, query_channels: int, key_value_channels: int, out_channels: int, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must split evenly over {heads} heads")
        self.heads = heads
        self.head_dim = dim // heads
        self.query_norm = nn.LayerNorm(query_channels)
        self.key_value_norm = nn.LayerNorm(key_value_channels)
        self.query = nn.Linear(query_channels, dim)
        self.key = nn.Linear(key_value_channels, dim)
        self.value = nn.Linear(key_value_channels, dim)
        self.output = nn.Linear(dim, out_channels)

    def attend(self, query: torch.Tensor, key_value: torch.Tensor) -> torch.Tensor:
        """(N, L, C_q) query tokens and (N, S, C_kv) key/value tokens -> (N, L, out_channels)."""
        n, length = query.shape[:2]

        def split(x: torch.Tensor) -> torch.Tensor:  # (N, T, dim) -> (N, heads, T, head_dim)
            return x.view(n, -1, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.query(query)), split(self.key(key_value)), split(self.value(key_value))
        heads = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, length, -1)
        return self.output(heads)

    def forward(self, query: torch.Tensor, key_value: torch.Tensor) -> torch.Tensor:
        """`query` (N, C_q, h, w) and `key_value` (N, C_kv, h', w') -> (N, out_channels, h, w)."""
        n, _, h, w = query.shape
        attended = self.attend(self.query_norm(tokens(query)), self.key_value_norm(tokens(key_value)))
        return attended.transpose(1, 2).reshape(n, -1, h, w)


class CrossScaleAssistant(nn.Module):
    """Per student pyramid level (levels differ in channels for YOLOv8): a cross-attention between the student's
    feature and the teacher's (multi-scale or plain), plus the chosen residual (see the module docstring)."""

    def __init__(
        self,
        student_channels: list[int],
        teacher_channels: list[int],
        dim: int = 128,
        heads: int = 4,
        rates: tuple[int, ...] = (1, 2, 4, 8),
        query_from: QuerySide = "student",
        attention: Attention = "msc",
        residual: Residual = "teacher",
    ) -> None:
        super().__init__()
        for name, value, allowed in (
            ("query_from", query_from, ("student", "teacher")),
            ("attention", attention, ATTENTIONS),
            ("residual", residual, RESIDUALS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
        self.query_from = query_from
        self.residual = residual
        self.levels = nn.ModuleList()
        self.teacher_projections = nn.ModuleList()  # residual="teacher" only
        for student, teacher in zip(student_channels, teacher_channels, strict=True):
            query, key_value = (student, teacher) if query_from == "student" else (teacher, student)
            self.levels.append(
                MultiScaleCrossAttention(query, key_value, student, dim, heads, rates)
                if attention == "msc"
                else PlainCrossAttention(query, key_value, student, dim, heads)
            )
            if residual == "teacher":
                self.teacher_projections.append(nn.Conv2d(teacher, student, 1))

    def forward(self, student_pyramid: list[torch.Tensor], teacher_pyramid: list[torch.Tensor]) -> list[torch.Tensor]:
        """The assistant's pyramid (student channels, student grids) from the student's pyramid and the teacher's,
        aligned to it level by level. Neither input is trained through it: both are detached here."""
        outputs = []
        for level, (attention, student, teacher) in enumerate(
            zip(self.levels, student_pyramid, teacher_pyramid, strict=True)
        ):
            student, teacher = student.detach(), teacher.detach()
            query, key_value = (student, teacher) if self.query_from == "student" else (teacher, student)
            attended = attention(query, key_value)
            if self.residual == "teacher":
                attended = attended + self.teacher_projections[level](teacher)
            elif self.residual == "student":
                attended = attended + student
            outputs.append(attended)
        return outputs
