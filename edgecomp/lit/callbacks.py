"""Callbacks edgecomp adds to every training run."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.fabric.utilities.seed import seed_everything


class EpochReseed(pl.Callback):
    """Re-seed every generator (torch, numpy, random) at the start of each epoch from (seed, epoch).

    Lightning restores the model, optimiser, scheduler and loop counters from a checkpoint, but not the global
    random state, which the model's own randomness (dropout, stochastic depth) draws from. Seeding each epoch
    from (seed, epoch) makes epoch k the same whether the run got there uninterrupted or resumed from the
    checkpoint of epoch k-1. (The data side is seeded per sample: edgecomp.data.sampling.)
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seed_everything((self.seed * 100_003 + trainer.current_epoch) % 2**32, workers=True, verbose=False)
