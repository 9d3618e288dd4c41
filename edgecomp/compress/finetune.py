"""`compressor=finetune`: train the model it is given for `epochs` more, with the task's own loss and nothing else.

Alone it is "more epochs of the baseline"; in a recipe it is the control of a recovery stage: the same epochs,
learning rate and schedule as the distillation it stands in for, without the teacher, so that what the teacher adds
is the difference between the two recipes' records.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from edgecomp.compress.compressor import Compressor
from edgecomp.compress.context import CompressionContext
from edgecomp.errors import ConfigError


class FineTune(Compressor):
    """`epochs` of the task's training at `lr` (null: the run optimizer's), with the run's learning-rate schedule
    spanning them (`lr_schedule: false`: a constant `lr`)."""

    def __init__(self, name: str, epochs: int, lr: float | None = None, lr_schedule: bool = True) -> None:
        super().__init__(name)
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise ConfigError(f"compressor.epochs={epochs}: expected a whole number of epochs >= 1")
        if lr is not None and not lr > 0:
            raise ConfigError(f"compressor.lr={lr}: expected a learning rate > 0 (null: the run optimizer's)")
        self.epochs = epochs
        self.lr = lr
        self.lr_schedule = bool(lr_schedule)

    def compress(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        training = context.training
        lr = self.lr if self.lr is not None else training.default_lr
        scheduler = training.scheduler(self.epochs) if self.lr_schedule else None
        module = training.task_module(model, lr, scheduler)
        training.fine_tune(module, self.epochs)
        return module.model.cpu()

    @property
    def trains(self) -> bool:
        return True

    def settings(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "lr": self.lr, "lr_schedule": self.lr_schedule}
