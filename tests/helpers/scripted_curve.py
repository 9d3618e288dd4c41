"""A LightningModule whose validation metric follows a scripted curve: what a convergence rule sees, without a
model that has to learn it. Its model's first weight tensor is set to the epoch's index before each validation, so
the weights a run keeps say which epoch they are from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


class ScriptedCurveModule(pl.LightningModule):
    """Bound like a task module (`module(model, optimizer=..., scheduler=...)`); logs `curve[epoch]` as `monitor`."""

    def __init__(
        self, model: nn.Module, optimizer: Any, scheduler: Any = None, *, curve: Sequence[float], monitor: str
    ) -> None:
        super().__init__()
        self.model = model
        self.optimizer_factory = optimizer
        self.curve = list(curve)
        self.monitor = monitor

    @property
    def marker(self) -> torch.Tensor:
        return next(self.model.parameters())

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.marker.sum() * 0.0  # no gradient: the weights change only by the marker

    def on_validation_epoch_start(self) -> None:
        with torch.no_grad():
            self.marker.fill_(float(self.current_epoch))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        pass

    def on_validation_epoch_end(self) -> None:
        self.log(self.monitor, self.curve[self.current_epoch])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


class TwoBatches(pl.LightningDataModule):
    """Two one-sample batches for each of training and validation."""

    def _loader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.zeros(2, 1)), batch_size=1)

    def train_dataloader(self) -> DataLoader:
        return self._loader()

    def val_dataloader(self) -> DataLoader:
        return self._loader()
