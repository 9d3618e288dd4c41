"""Output distillation after Chen et al. 2017 ("Learning efficient object detection models with knowledge
distillation", NeurIPS): ScaleKD's L_cls and L_bbox (section 3.2: "we follow [5] to have two loss functions"), and
the od2017 baseline's.

- L_cls, Chen et al.'s soft-label loss L_soft = -sum_c w_c P_t(c) log P_s(c), P = softmax(z / T), with w_c =
  `background_weight` (Chen et al.: 1.5) for the background class and 1 for the others (their answer to the
  background's dominance), averaged over the predictions (a second stage's sampled proposals). Dense one-stage heads
  (and the RPN) score each class with its own sigmoid and have no background class: for them L_soft is the same
  cross-entropy per class between Bernoulli distributions, -[p_t log p_s + (1 - p_t) log(1 - p_s)], summed over classes and positions and
  divided by the number of positives of the ground-truth assignment -- the normalisation of the dense families' own
  classification losses (focal loss, YOLOv8's BCE), without which the thousands of background positions, where both
  networks agree on ~0, would average the term away. The value reported is L_soft minus its value for a student
  equal to the reference (which has no gradient): 0 when the student matches, the binary KL divergence for sigmoid
  heads;
- L_bbox, Chen et al.'s teacher-bounded regression loss: at each positive (a position the family's own assignment
  gives a ground-truth box), with R_s, R_t the student's and the reference's regression and y the ground truth's,
      L_b = ||R_s - y||^2   if ||R_s - y||^2 + m > ||R_t - y||^2,   else 0,
  averaged over the positives: the reference does not pull the student towards its own boxes, it bounds how good
  the student must be; a student already better than the reference by m is left alone (`bbox_loss=bounded`); or ScaleKD's eq. 2, a direct regression to the reference's boxes, l(R_s, R_t) with l the
  squared L2 distance (`l2`) or the smooth L1 loss (`smooth_l1`, beta 1/9 as torchvision's and Detectron's box
  losses), averaged over the positives: the form under which the paper's Table 1 shows what noisy reference boxes do.

The reference is the teacher (od2017) or ScaleKD's cross-scale assistant. `perturb_px` moves every reference box
diagonally by that many pixels (of the student's input) before the comparison: ScaleKD's Table 1. Under the bounded
loss a shifted reference only switches the loss off where its error grows past the student's (it is never a
target); under `l2` / `smooth_l1` the student is pulled towards the shifted boxes.

Box units (`box_units`). Each family regresses in its own box space (edgecomp.distill.families): RetinaNet's anchor
deltas are relative to an anchor of about the object's size, FCOS's side distances are in units of the level's
stride, YOLOv8's in stride units too. A squared error of one family is then tens of times another's for the same
misplaced box (a 64 px object at stride 8: 8 units wide in YOLOv8's space, 1 in RetinaNet's), and one gamma cannot
mean the same for all. `relative` (the default) divides every coordinate -- student, reference and target alike --
by the family's `StageTargets.box_scale`, which puts it in units of the object's own size: a box moved by 1 px
changes a coordinate by about 1 / (the object's width or height in pixels) in every family (delta coders' weights
are divided out as well). `native` compares the raw box spaces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from edgecomp.distill.families import Stage, StageTargets
from edgecomp.settings import Settings

BboxLoss = Literal["bounded", "l2", "smooth_l1"]
BoxUnits = Literal["relative", "native"]
SMOOTH_L1_BETA = 1.0 / 9.0


class OutputLossSettings(Settings):
    """Chen et al.'s output losses as configured (`compressor.output`)."""

    temperature: float = Field(
        1.0, gt=0, description="T of the soft labels, > 0 (both sides' logits are divided by it; Chen et al.: 1)"
    )
    background_weight: float = Field(
        1.5, gt=0, description="w of the background class in a softmax stage, > 0 (Chen et al.: 1.5)"
    )
    bound_margin: float = Field(0.0, ge=0, description="m of the bounded regression loss, >= 0")
    bbox_loss: BboxLoss = Field(
        "bounded", description="bounded (Chen et al.), l2 or smooth_l1 (ScaleKD's eq. 2, direct regression)"
    )
    box_units: BoxUnits = Field(
        "relative",
        description="relative (box-space coordinates in units of the object's size in every family) or native "
        "(each family's own)",
    )


# The reference's boxes moved by this many pixels in x and in y (ScaleKD's Table 1)
PerturbPx = Annotated[float, Field(ge=0, description="a diagonal shift in pixels, >= 0 (Table 1: 6, 12)")]


class OutputDistillationSettings(OutputLossSettings):
    """The output losses and the perturbation of the reference's boxes, as the distillers take them."""

    perturb_px: PerturbPx = 0.0


def soft_label_loss(
    student_logits: torch.Tensor,
    reference_logits: torch.Tensor,
    activation: str,
    temperature: float = 1.0,
    background_weight: float = 1.0,
    positives: int | None = None,
) -> torch.Tensor:
    """Chen et al.'s L_soft of `student_logits` (M, K) against `reference_logits` (M, K), less its value at
    student = reference (see the module docstring). Softmax: class 0 is the background (weighted
    `background_weight`), averaged over the M predictions. Sigmoid: summed over classes and predictions, divided by
    `positives` (at least 1; None: by M)."""
    reference_logits = reference_logits.detach()
    if activation == "softmax":
        weights = torch.ones(student_logits.shape[-1], dtype=student_logits.dtype, device=student_logits.device)
        weights[0] = background_weight
        reference = F.softmax(reference_logits / temperature, dim=-1)
        log_ratio = F.log_softmax(reference_logits / temperature, dim=-1) - F.log_softmax(
            student_logits / temperature, dim=-1
        )
        return (weights * reference * log_ratio).sum(dim=-1).mean()
    if activation == "sigmoid":
        # The binary KL per class, from log-sigmoids element by element: the cross-entropy and the reference's
        # entropy summed separately would cancel to rounding noise where the two networks nearly agree.
        student_logits, reference_logits = student_logits / temperature, reference_logits / temperature
        reference = torch.sigmoid(reference_logits)
        divergence = reference * (F.logsigmoid(reference_logits) - F.logsigmoid(student_logits)) + (1 - reference) * (
            F.logsigmoid(-reference_logits) - F.logsigmoid(-student_logits)
        )
        return divergence.sum() / max(1, positives if positives is not None else len(student_logits))
    raise ValueError(f"activation must be 'sigmoid' or 'softmax', got {activation!r}")


def bounded_regression_loss(
    student_boxes: torch.Tensor,
    reference_boxes: torch.Tensor,
    target_boxes: torch.Tensor,
    positives: torch.Tensor,
    margin: float = 0.0,
) -> torch.Tensor:
    """Chen et al.'s teacher-bounded L2 regression loss over the `positives` (M,) of (M, 4) box-space regressions,
    averaged over the positives (zero, still in the graph, when there are none)."""
    if not bool(positives.any()):
        return student_boxes.sum() * 0.0
    student = student_boxes[positives]
    target = target_boxes[positives].to(student)
    student_error = (student - target).pow(2).sum(dim=-1)
    reference_error = (reference_boxes[positives].detach() - target).pow(2).sum(dim=-1)
    bounded = student_error + margin > reference_error
    return (student_error * bounded).sum() / len(student_error)


def direct_regression_loss(
    student_boxes: torch.Tensor, reference_boxes: torch.Tensor, positives: torch.Tensor, loss: str = "l2"
) -> torch.Tensor:
    """ScaleKD's eq. 2: the student's (M, 4) box-space regressions regressed onto the reference's, l2 (squared
    distance) or smooth_l1 (summed over the coordinates), averaged over the `positives` (zero, in the graph, when
    there are none)."""
    if not bool(positives.any()):
        return student_boxes.sum() * 0.0
    student, reference = student_boxes[positives], reference_boxes[positives].detach()
    if loss == "l2":
        per_position = (student - reference).pow(2).sum(dim=-1)
    elif loss == "smooth_l1":
        per_position = F.smooth_l1_loss(student, reference, reduction="none", beta=SMOOTH_L1_BETA).sum(dim=-1)
    else:
        raise ValueError(f"direct regression loss must be 'l2' or 'smooth_l1', got {loss!r}")
    return per_position.mean()


def output_distillation(
    student: dict[str, Stage],
    reference: dict[str, Stage],
    targets: dict[str, StageTargets],
    reference_levels: Mapping[str, Sequence[int | None]],
    settings: OutputDistillationSettings,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_cls, L_bbox) of the student's stages against the reference's, each the sum over the stages of the loss
    over that stage's positions. `reference_levels[stage][l]`: the reference level that student level l is compared
    with, or None to leave level l out (a teacher level of another effective stride, edgecomp.distill.alignment)."""
    loss_cls, loss_bbox = [], []
    for name, stage in student.items():
        levels = [(level, r) for level, r in enumerate(reference_levels[name]) if r is not None]
        if not levels:
            continue
        other, assignment = reference[name], targets[name]

        def gather(values: list[torch.Tensor], pairs=levels) -> torch.Tensor:
            return torch.cat([values[level] for level, _ in pairs])

        reference_logits = torch.cat([other.logits[r] for _, r in levels])
        reference_boxes = torch.cat([other.boxes[r] for _, r in levels])
        if settings.perturb_px:
            reference_boxes = reference_boxes + settings.perturb_px * gather(assignment.shift_per_pixel)
        student_boxes, target_boxes = gather(stage.boxes), gather(assignment.boxes)
        positives = gather(assignment.positives)
        if settings.box_units == "relative":
            # 1 away from the positives: a position with no object has no size (and 0 / 0 would poison the gradient)
            scale = torch.where(positives[:, None], gather(assignment.box_scale).to(student_boxes), 1.0)
            student_boxes, reference_boxes, target_boxes = (
                student_boxes / scale, reference_boxes / scale, target_boxes.to(scale) / scale
            )
        loss_cls.append(
            soft_label_loss(
                gather(stage.logits), reference_logits, stage.activation, settings.temperature,
                settings.background_weight, positives=int(positives.sum()),
            )
        )  # fmt: skip
        loss_bbox.append(
            bounded_regression_loss(student_boxes, reference_boxes, target_boxes, positives, settings.bound_margin)
            if settings.bbox_loss == "bounded"
            else direct_regression_loss(student_boxes, reference_boxes, positives, settings.bbox_loss)
        )
    if not loss_cls:
        raise ValueError("no level to distil: no reference level shares a student level's stride")
    return torch.stack(loss_cls).sum(), torch.stack(loss_bbox).sum()
