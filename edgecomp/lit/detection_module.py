"""The LightningModule that trains a detector (any DetectorAdapter) with its family's own loss.

Every loss term the family returns is logged each step (`train/<term>`), with their sum (`train/loss`, what is
minimised); validation logs the summed loss on the evaluation split (`val/loss`). The COCO metrics are computed
once, on the saved model, by the evaluation that follows training (edgecomp.evaluate.coco_evaluator).

Two things detectors trained from random init need, and classifiers do not: a linear learning-rate warm-up over
the first `warmup_steps` optimizer steps (the early, large gradients of an untrained head otherwise blow up the
backbone; torchvision's references and Ultralytics both warm up), applied as a factor on top of the configured
schedule, and gradient-norm clipping at `max_grad_norm` (Ultralytics clips at 10).
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from edgecomp.lit.optimization import OptimizerFactory, SchedulerFactory, optimizers
from edgecomp.models.detection.adapter import DetectorAdapter


class DetectionModule(pl.LightningModule):
    def __init__(
        self,
        model: DetectorAdapter,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        warmup_steps: int = 100,
        max_grad_norm: float | None = 10.0,
    ) -> None:
        super().__init__()
        if not isinstance(model, DetectorAdapter):
            raise TypeError(f"DetectionModule trains a DetectorAdapter, got {type(model).__name__}")
        self.model = model
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.warmup_steps = warmup_steps
        self.max_grad_norm = max_grad_norm

    def forward(self, images: torch.Tensor):
        return self.model(images)

    def _losses(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        images, targets = batch
        terms = self.model.loss(images, targets)
        return torch.stack(list(terms.values())).sum(), terms, len(images)

    def training_step(self, batch, batch_idx):
        loss, terms, batch_size = self._losses(batch)
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, _, batch_size = self._losses(batch)
        self.log("val/loss", loss, prog_bar=True, batch_size=batch_size, sync_dist=True)

    def configure_optimizers(self):
        return optimizers(self.model.parameters(), self.optimizer_factory, self.scheduler_factory)

    def warmup_factor(self) -> float:
        if self.warmup_steps <= 0:
            return 1.0
        return min(1.0, (self.global_step + 1) / self.warmup_steps)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        # The factor scales the step without touching the learning rates the scheduler owns (its chained form
        # reads them back), so the schedule after warm-up is exactly the configured one.
        factor = self.warmup_factor()
        groups = optimizer.param_groups
        scheduled = [group["lr"] for group in groups]
        for group in groups:
            group["lr"] *= factor
        try:
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        finally:
            for group, lr in zip(groups, scheduled, strict=True):
                group["lr"] = lr

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        clip = gradient_clip_val if gradient_clip_val is not None else self.max_grad_norm
        if clip is not None:
            self.clip_gradients(
                optimizer, gradient_clip_val=clip, gradient_clip_algorithm=gradient_clip_algorithm or "norm"
            )
