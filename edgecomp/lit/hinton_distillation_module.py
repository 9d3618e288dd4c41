"""The LightningModule that trains a classifier by Hinton knowledge distillation from a frozen teacher."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from edgecomp.lit.optimization import OptimizerFactory, SchedulerFactory, optimizers


def hinton_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hinton et al. 2015: `alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))`.

    Returns (total, cross-entropy, distillation term), the distillation term already scaled by T^2: the gradients
    of the softened KL shrink as 1/T^2, and the scaling keeps the two terms' balance the same whatever T is.
    The KL is averaged over the batch ("batchmean": the true KL per sample, which "mean" is not).
    """
    cross_entropy = F.cross_entropy(student_logits, labels)
    kl = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        log_target=True,
        reduction="batchmean",
    )
    distillation = temperature**2 * kl
    return alpha * cross_entropy + (1 - alpha) * distillation, cross_entropy, distillation


class HintonDistillationModule(pl.LightningModule):
    """Trains `student` on the Hinton loss against `teacher`, which stays frozen and in eval mode throughout.

    Only the student's parameters are optimised. `epoch_losses` holds the mean training loss (the total objective)
    of every finished epoch, which the KD compressor records to show that the loss fell.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None,
        temperature: float,
        alpha: float,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher.requires_grad_(False).eval()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.temperature = temperature
        self.alpha = alpha
        self.val_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.epoch_losses: list[float] = []
        self._loss_sum = 0.0
        self._samples = 0

    def train(self, mode: bool = True) -> HintonDistillationModule:
        """Lightning switches the whole module to training mode before each training epoch: the teacher's
        BatchNorm statistics and dropout must stay as they were trained, so it goes straight back to eval."""
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.student(images)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        with torch.no_grad():
            teacher_logits = self.teacher(images)
        loss, cross_entropy, distillation = hinton_loss(
            self.student(images), teacher_logits, labels, self.temperature, self.alpha
        )
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/loss_ce", cross_entropy)
        self.log("train/loss_kd", distillation)
        self._loss_sum += loss.detach().item() * len(labels)
        self._samples += len(labels)
        return loss

    def on_train_epoch_end(self) -> None:
        mean_loss = self._loss_sum / max(self._samples, 1)
        self.epoch_losses.append(mean_loss)
        self._loss_sum, self._samples = 0.0, 0
        if not math.isfinite(mean_loss):
            self.trainer.should_stop = True  # a diverged student cannot recover: no point in more epochs

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        logits = self.student(images)
        self.val_top1(logits, labels)
        self.log("val/loss", F.cross_entropy(logits, labels), sync_dist=True)
        self.log("val/top1", self.val_top1, prog_bar=True)

    def configure_optimizers(self):
        return optimizers(self.student.parameters(), self.optimizer_factory, self.scheduler_factory)
