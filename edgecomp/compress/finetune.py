"""Short training runs inside a compressor (pruning's fine-tune with the masks held, distillation).

A compressor trains a LightningModule of its own for `epochs` on the job's training data, with the run's trainer
settings (precision, determinism, accelerator) and logger, so its loss curves land next to the baseline's. No
checkpoints are written: a compressor's product is what `compress` returns, measured and recorded by compress.py.
The data order and augmentation follow (seed, epoch) as in every edgecomp run (edgecomp.data.sampling), and the
model's own randomness is re-seeded each epoch (EpochReseed).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from edgecomp.config import build
from edgecomp.lit.callbacks import EpochReseed


def fine_tune(module: pl.LightningModule, job: Any, epochs: int, *callbacks: pl.Callback) -> pl.Trainer:
    """Fit `module` for `epochs` epochs on `job.datamodule` (validating on the evaluation split each epoch)."""
    if epochs < 1:
        raise ValueError(f"a compressor's fine-tune needs epochs >= 1, got {epochs}")
    trainer = build(
        job.cfg.trainer,
        max_epochs=epochs,
        logger=job.logger,
        callbacks=[EpochReseed(job.cfg.seed), *callbacks],
        enable_checkpointing=False,
        default_root_dir=str(job.cfg.paths.results),
    )
    trainer.fit(module, datamodule=job.datamodule)
    return trainer
