"""`compressor=finetune`: train the model it is given for `epochs` more, with the task's own loss and nothing else.

Alone it is "more epochs of the baseline"; in a recipe it is the control of a recovery stage: the same epochs,
learning rate and schedule as the distillation it stands in for, without the teacher, so that what the teacher adds
is the difference between the two recipes' records.
"""

from __future__ import annotations

import torch.nn as nn
from pydantic import Field

from edgecomp.compress.compressor import Compressor
from edgecomp.compress.context import CompressionContext
from edgecomp.settings import Settings


class FineTuneSettings(Settings):
    epochs: int = Field(ge=1, description="a whole number of epochs >= 1")
    lr: float | None = Field(None, gt=0, description="a learning rate > 0 (null: the run optimizer's)")
    lr_schedule: bool = Field(
        True, description="true (the run's learning-rate schedule spanning the epochs) or false (a constant lr)"
    )


class FineTune(Compressor):
    """`epochs` of the task's training at `lr` (null: the run optimizer's), with the run's learning-rate schedule
    spanning them (`lr_schedule: false`: a constant `lr`)."""

    settings_class = FineTuneSettings
    options: FineTuneSettings

    def compress(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        training, options = context.training, self.options
        lr = options.lr if options.lr is not None else training.default_lr
        scheduler = training.scheduler(options.epochs) if options.lr_schedule else None
        module = training.task_module(model, lr, scheduler)
        training.fine_tune(module, options.epochs)
        return module.model.cpu()

    @property
    def trains(self) -> bool:
        return True
