"""The LightningModule that trains a student detector against a frozen teacher with a distiller (FitNet, Chen et al.
2017, ScaleKD; edgecomp.distill):

    L = alpha * L_feat + beta * L_cls + gamma * L_bbox + L_det            (ScaleKD eq. 7)

L_det is the student family's own detection loss; the other terms come from the distiller (a method has the terms it
has, the others weigh nothing). One training step runs the teacher once, on its `teacher_scale` x input, without
gradients, and the student once. The teacher's input (`teacher_input`): `native`, the batch's own teacher images
(the stored images letterboxed at the teacher's resolution: a batch `(images, targets, teacher_images)` from
DetectionDataModule.with_teacher_scale), or `upsampled`, the student's images upsampled bilinearly. The student's
features, head outputs and detection step (loss and ground-truth assignment) serve both L_det and the distillation
terms.

The student trains as its from-scratch baseline does (edgecomp.lit.detection_module.DetectionModule): the run's optimizer
and scheduler, a linear learning-rate warm-up over `warmup_steps`, gradient-norm clipping at `max_grad_norm`. Its
optimizer also holds the distiller's student-side parameters (adapters, the SDF's student side). ScaleKD's schedule
(section 3.2) adds, as step counts or fractions of the run (`DistillationSchedule`):
- `student_warmup`: the distillation terms are computed and logged but weigh nothing for the first steps ("we first
  warm up the student model ... it could be detrimental when the instructive knowledge is optimized
  insufficiently"): the student learns from the ground truth alone while the distiller's learned parts (ScaleKD's
  assistant) catch up;
- `freeze_backbone`: the student's backbone receives no update for the first steps: its parameters stop requiring
  gradients and its BatchNorm layers run in eval mode (normalising with their running statistics, which hold still),
  as mmdet's frozen stages do; a frozen layer whose statistics drifted would no longer be the layer it was.

Optimisation is manual because ScaleKD steps a second optimizer, the assistant's, before the student's in each
iteration (edgecomp.lit.scalekd_module); this module gives the hook (`before_student_update`). Every term is logged every
step (`train/<term>`, raw, unweighted), and the mean of each over every epoch is kept (`epoch_means`) for the record.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

import lightning.pytorch as pl
import torch
import torch.nn as nn
from pydantic import AfterValidator, Field

from edgecomp.data.detection.detection_datamodule import teacher_image_size
from edgecomp.distill.alignment import teacher_input
from edgecomp.distill.distiller import TERMS, DistillationBatch, Distiller
from edgecomp.errors import ConfigError
from edgecomp.lit.optimization import OptimizerFactory, SchedulerFactory
from edgecomp.models.detection.adapter import DetectorAdapter
from edgecomp.settings import Settings


@contextmanager
def uncounted_step(optimizer: Any) -> Iterator[None]:
    """Step a LightningOptimizer without advancing Lightning's global step. Under manual optimisation every
    `optimizer.step()` counts one, so a module with two optimizers would advance two per batch and `max_steps` would
    stop it after half the batches; an auxiliary optimizer (ScaleKD's assistant) steps inside this instead. The step
    itself still goes through the strategy and precision plugin (gradient unscaling under mixed precision)."""
    hooks = getattr(optimizer, "_on_before_step", None), getattr(optimizer, "_on_after_step", None)
    if hooks[0] is None:  # a plain torch optimizer: nothing counts its steps
        yield
        return
    optimizer._on_before_step = optimizer._on_after_step = lambda: None
    try:
        yield
    finally:
        optimizer._on_before_step, optimizer._on_after_step = hooks


# What the teacher sees of a batch (see the module docstring): the one definition the compressor's settings use too.
TeacherInput = Literal["native", "upsampled"]


def backbone_norms(backbone: nn.Module) -> list[nn.Module]:
    return [m for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@dataclass(frozen=True)
class LossWeights:
    """alpha, beta, gamma of eq. 7: the weights of L_feat, L_cls and L_bbox (L_det weighs 1)."""

    alpha: float = 0.0
    beta: float = 0.0
    gamma: float = 0.0

    def of(self, term: str) -> float:
        return {"loss_feat": self.alpha, "loss_cls": self.beta, "loss_bbox": self.gamma}[term]


def fraction_or_steps(value: float) -> float:
    """A share of the run's steps in [0, 1), or a whole number of steps >= 1."""
    if value >= 1 and value != int(value):
        raise ValueError("neither a fraction nor a whole number of steps")
    return value


# A fraction of the run's steps in [0, 1), or a whole number of steps >= 1.
ScheduleSteps = Annotated[
    float,
    Field(ge=0, description="a fraction of the run in [0, 1) or a whole number of steps >= 1"),
    AfterValidator(fraction_or_steps),
]


class DistillationSchedule(Settings):
    """Each value: a fraction of the run's steps when in [0, 1), a number of steps when >= 1."""

    student_warmup: ScheduleSteps = 0.0  # the distillation terms weigh nothing for these first steps
    freeze_backbone: ScheduleSteps = 0.0  # the student's backbone is not updated for these first steps

    @staticmethod
    def steps(value: float, total_steps: int) -> int:
        return int(value) if value >= 1 else round(value * total_steps)


class DetectionDistillationModule(pl.LightningModule):
    """See the module docstring. `teacher` stays frozen and in eval mode throughout."""

    # The terms whose first- and last-epoch means the record holds.
    summary_terms: tuple[str, ...] = (*TERMS, "loss_det", "loss")

    def __init__(
        self,
        student: DetectorAdapter,
        teacher: DetectorAdapter,
        distiller: Distiller,
        weights: LossWeights,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        teacher_scale: float = 1.0,
        teacher_input: TeacherInput = "native",
        schedule: DistillationSchedule | None = None,
        warmup_steps: int = 100,
        max_grad_norm: float | None = 10.0,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.student = student
        self.teacher = teacher.requires_grad_(False).eval()
        self.distiller = distiller
        self.weights = weights
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        if teacher_input not in get_args(TeacherInput):
            known = get_args(TeacherInput)
            raise ConfigError(f"compressor.teacher_input must be one of {known}, got {teacher_input!r}")
        self.teacher_scale = teacher_scale
        self.teacher_input = teacher_input
        self.schedule = schedule or DistillationSchedule()
        self.warmup_steps = warmup_steps
        self.max_grad_norm = max_grad_norm
        self.steps_done = 0
        self.distill_from_step = 0  # set when training starts, from the schedule and the run's length
        self.backbone_frozen_until = 0
        self._backbone_requires_grad = {name: p.requires_grad for name, p in self.backbone.named_parameters()}
        self._backbone_frozen = False
        self.epoch_means: dict[str, list[float]] = defaultdict(list)
        self._sums: dict[str, float] = defaultdict(float)
        self._samples = 0

    @property
    def backbone(self) -> nn.Module:
        return self.distiller.student_view.backbone

    def train(self, mode: bool = True) -> DetectionDistillationModule:
        """Lightning puts the whole module in training mode each epoch: the teacher goes straight back to eval, and so
        do a frozen backbone's BatchNorm layers."""
        super().train(mode)
        self.teacher.eval()
        if self._backbone_frozen:
            for norm in backbone_norms(self.backbone):
                norm.eval()
        return self

    def forward(self, images: torch.Tensor):
        return self.student(images)

    # ---------------------------------------------------------------------------------------------- optimisation

    def student_optimizer_parameters(self) -> list[nn.Parameter]:
        return [*self.student.parameters(), *self.distiller.student_parameters()]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.student_optimizer_parameters())
        schedulers = [self.scheduler_factory(optimizer)] if self.scheduler_factory is not None else []
        return [optimizer, *self.extra_optimizers()], schedulers

    def extra_optimizers(self) -> list[torch.optim.Optimizer]:
        """Optimizers besides the student's (ScaleKD: the assistant's)."""
        return []

    def all_optimizers(self) -> list[Any]:
        optimizers = self.optimizers()
        return list(optimizers) if isinstance(optimizers, list | tuple) else [optimizers]

    def clip(self, optimizer: Any) -> None:
        if self.max_grad_norm is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.max_grad_norm, gradient_clip_algorithm="norm")

    def warmup_factor(self) -> float:
        """The student's linear learning-rate warm-up, as DetectionModule's."""
        if self.warmup_steps <= 0:
            return 1.0
        return min(1.0, (self.steps_done + 1) / self.warmup_steps)

    def step_student(self, optimizer: Any) -> None:
        # The factor scales this step without touching the learning rates the scheduler owns.
        factor = self.warmup_factor()
        scheduled = [group["lr"] for group in optimizer.param_groups]
        for group in optimizer.param_groups:
            group["lr"] *= factor
        try:
            optimizer.step()
        finally:
            for group, lr in zip(optimizer.param_groups, scheduled, strict=True):
                group["lr"] = lr

    def set_backbone_frozen(self, frozen: bool) -> None:
        if frozen == self._backbone_frozen:
            return
        for name, parameter in self.backbone.named_parameters():
            parameter.requires_grad_(False if frozen else self._backbone_requires_grad[name])
        for norm in backbone_norms(self.backbone):  # statistics held while frozen; back to the module's mode after
            norm.train(self.training and not frozen)
        self._backbone_frozen = frozen

    def on_train_start(self) -> None:
        batches, epochs = self.trainer.num_training_batches, self.trainer.max_epochs
        if epochs is None or not math.isfinite(batches):  # a schedule's fractions are of the run's steps
            raise ConfigError(
                "a distillation schedule needs the run's length: trainer.max_epochs and a training loader of known "
                f"length (got max_epochs={epochs}, {batches} batches per epoch)"
            )
        total = int(batches) * epochs
        self.distill_from_step = DistillationSchedule.steps(self.schedule.student_warmup, total)
        self.backbone_frozen_until = DistillationSchedule.steps(self.schedule.freeze_backbone, total)

    def on_train_end(self) -> None:
        self.set_backbone_frozen(False)  # the deployed student's parameters as they were built

    # ---------------------------------------------------------------------------------------------- one step

    def teacher_images(self, images: torch.Tensor, teacher_images: torch.Tensor | None) -> torch.Tensor:
        """What the teacher sees of the batch (see the module docstring)."""
        if self.teacher_scale == 1:
            return images
        if self.teacher_input == "upsampled":
            return teacher_input(images, self.teacher_scale)
        expected = teacher_image_size(images.shape[-1], self.teacher_scale)
        if teacher_images is None or teacher_images.shape[-1] != expected:
            got = "none" if teacher_images is None else f"{teacher_images.shape[-1]} px"
            raise ConfigError(
                f"compressor.teacher_input=native needs each training batch to carry the teacher's {expected} px "
                f"images (DetectionDataModule.with_teacher_scale({self.teacher_scale:g})); got {got}"
            )
        return teacher_images

    def distillation_batch(
        self,
        images: torch.Tensor,
        targets: list[dict[str, torch.Tensor]],
        teacher_images: torch.Tensor | None = None,
    ) -> DistillationBatch:
        with torch.no_grad():
            teacher = self.teacher.features(self.teacher_images(images, teacher_images))
        student = self.student.features(images)
        head = self.student.head(student.pyramid)
        step = self.distiller.student_view.detection_step(student.pyramid, head, targets)
        return DistillationBatch(images, targets, student, head, step, teacher)

    def before_student_update(self, batch: DistillationBatch) -> dict[str, torch.Tensor]:
        """Work done before the student's update in each iteration (ScaleKD: the assistant's). Returns terms to log."""
        return {}

    def training_step(self, batch, batch_idx):
        images, targets, *teacher_images = batch  # a native teacher's images come third
        self.set_backbone_frozen(self.steps_done < self.backbone_frozen_until)
        data = self.distillation_batch(images, targets, *teacher_images)
        logged = dict(self.before_student_update(data))

        loss_det = torch.stack(list(data.student_step.losses.values())).sum()
        terms = self.distiller.losses(data)
        distilling = self.steps_done >= self.distill_from_step
        total = loss_det
        for name, value in terms.items():
            weight = self.weights.of(name)
            if distilling and weight:  # a term that weighs nothing adds no gradient (and no weight decay)
                total = total + weight * value

        optimizer = self.all_optimizers()[0]
        optimizer.zero_grad()  # also drops what the assistant's loss left on the shared head
        self.manual_backward(total)
        self.clip(optimizer)
        self.step_student(optimizer)
        self.steps_done += 1

        logged.update(terms)
        logged.update({f"det_{name}": value for name, value in data.student_step.losses.items()})
        logged.update(loss_det=loss_det, loss=total)
        self.record(logged, batch_size=len(images))
        self.log("train/distilling", float(distilling), batch_size=len(images))
        return total.detach()

    def record(self, values: dict[str, torch.Tensor], batch_size: int) -> None:
        for name, value in values.items():
            value = value.detach()
            self.log(f"train/{name}", value, batch_size=batch_size, prog_bar=name == "loss")
            self._sums[name] += float(value) * batch_size
        self._samples += batch_size

    def on_train_epoch_end(self) -> None:
        for name, value in self._sums.items():
            self.epoch_means[name].append(value / max(self._samples, 1))
        self._sums, self._samples = defaultdict(float), 0
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):  # its step() takes a metric
                raise ConfigError(
                    "optimizer.scheduler: ReduceLROnPlateau is not supported here; the scheduler is stepped once per "
                    "epoch, without a metric"
                )
            scheduler.step()
        if not math.isfinite(self.epoch_means["loss"][-1]):
            self.trainer.should_stop = True  # a diverged student cannot recover

    def validation_step(self, batch, batch_idx):
        images, targets = batch
        loss = torch.stack(list(self.student.loss(images, targets).values())).sum()
        self.log("val/loss", loss, prog_bar=True, batch_size=len(images), sync_dist=True)

    def term_summary(self) -> dict[str, dict[str, float] | None]:
        """Each term's mean over the first and over the last epoch (None for a term the method does not have)."""
        return {
            name: {"first": self.epoch_means[name][0], "last": self.epoch_means[name][-1]}
            if self.epoch_means.get(name)
            else None
            for name in self.summary_terms
        }
