"""What every edgecomp LightningModule returns from `configure_optimizers`: the configured optimizer (a partial that
takes the parameters) and, optionally, its scheduler stepped once per epoch."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


def optimizers(
    parameters: Iterable[torch.nn.Parameter], optimizer: OptimizerFactory, scheduler: SchedulerFactory | None
) -> Any:
    built = optimizer(parameters)
    if scheduler is None:
        return built
    return {"optimizer": built, "lr_scheduler": {"scheduler": scheduler(built), "interval": "epoch"}}
