"""Training until converged: Lightning's EarlyStopping as edgecomp's convergence rule, and what the run reports.

A run with a `convergence` config (conf/convergence/) trains until its validation metric has not improved by more
than `min_delta` for `patience` epochs in a row, or until trainer.max_epochs (the cap), whichever comes first. The
run keeps its best epoch's weights (the run folder's `checkpoints/best.ckpt` and `model.pt`) and says in
`training.json` how many epochs it took and why it stopped: `plateau` (the rule fired), `cap`, or `diverged` (the
metric was not a finite number). A run without a convergence rule trains its fixed budget and says `budget`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from pydantic import Field

from edgecomp.settings import Settings, validated

TRAINING_SUMMARY = "training.json"
BEST = "best.ckpt"


class ConvergenceSettings(Settings):
    """What `convergence=plateau` accepts (conf/convergence/plateau.yaml)."""

    monitor: str = Field(description="the logged validation metric to watch (val/top1, val/loss)")
    mode: Literal["max", "min"] = Field(description="max (a metric that grows) or min (one that falls)")
    min_delta: float = Field(ge=0, description="the smallest change that counts as an improvement, >= 0")
    patience: int = Field(ge=1, description="a whole number of epochs >= 1 without an improvement")
    min_epochs: int = Field(1, ge=1, description="a whole number of epochs >= 1 before the rule judges")


class ConvergenceStop(EarlyStopping):
    """Stop once `monitor` has not improved by more than `min_delta` (absolute, in the metric's units) for
    `patience` validation epochs in a row, judged from epoch `min_epochs` on (before it the run is not judged: from
    random initialisation some networks sit near chance for their first epochs); `mode` max for a metric that grows
    (top-1), min for one that falls (a loss). Its state (the best value, the epochs waited) is saved in the run's
    checkpoints, so a resumed run stops where an uninterrupted one would."""

    def __init__(self, **settings: Any) -> None:
        options = validated(ConvergenceSettings, settings, prefix="convergence")
        self.min_epochs = options.min_epochs
        # strict: a run that never logs the metric is a misconfiguration, not a run that never converges
        super().__init__(
            monitor=options.monitor,
            mode=options.mode,
            min_delta=options.min_delta,
            patience=options.patience,
            strict=True,
        )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._judged(trainer):
            super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._judged(trainer):
            super().on_train_epoch_end(trainer, pl_module)

    def _judged(self, trainer: pl.Trainer) -> bool:
        """Whether the epoch now ending (the `current_epoch + 1`-th) is one the rule judges."""
        return trainer.current_epoch + 1 >= self.min_epochs

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning does not save `trainer.should_stop`: a run resumed from the checkpoint of the epoch its rule fired
        # at would train on. The rule's own state, restored from that checkpoint, says it had fired.
        if self.stopping_reason is not EarlyStoppingReason.NOT_STOPPED:
            trainer.should_stop = True

    @property
    def stopped(self) -> str:
        """Why the run stopped: `plateau` (the rule fired, at whichever epoch, the cap's included), `diverged` (the
        metric was not finite: EarlyStopping's check_finite) or `cap` (the rule had not fired when the cap came)."""
        if self.stopping_reason is EarlyStoppingReason.PATIENCE_EXHAUSTED:
            return "plateau"
        if self.stopping_reason is EarlyStoppingReason.NON_FINITE_METRIC:
            return "diverged"
        return "cap"

    def best_checkpointing(self, folder: Path) -> ModelCheckpoint:
        """The checkpoint of the best epoch by the same metric, `folder/best.ckpt` (overwritten when bettered)."""
        return ModelCheckpoint(
            dirpath=folder,
            filename=BEST.removesuffix(".ckpt"),
            monitor=self.monitor,
            mode=self.mode,
            save_top_k=1,
            enable_version_counter=False,
        )


def training_summary(
    trainer: pl.Trainer, stop: ConvergenceStop | None, best: ModelCheckpoint | None, best_epoch: int | None = None
) -> dict[str, Any]:
    """What the run's record says about its training: `epochs` trained, the cap, why it stopped and, with a
    convergence rule, the monitored metric's best value and the (1-based) `best_epoch` that reached it."""
    epochs = int(trainer.current_epoch)  # epochs completed: Lightning counts an epoch when it has ended
    summary: dict[str, Any] = {"epochs": epochs, "max_epochs": int(trainer.max_epochs or epochs)}
    if stop is None or best is None:
        return {**summary, "stopped": "budget"}
    score = best.best_model_score
    return {
        **summary,
        "stopped": stop.stopped,
        "monitor": stop.monitor,
        "mode": stop.mode,
        "min_delta": float(abs(stop.min_delta)),
        "patience": int(stop.patience),
        "min_epochs": int(stop.min_epochs),
        "best_epoch": best_epoch,
        "best": None if score is None else float(score),
    }


def write_summary(folder: Path, summary: dict[str, Any]) -> None:
    (folder / TRAINING_SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")


def read_summary(folder: Path) -> dict[str, Any] | None:
    """The run folder's training summary; None for a run trained before runs wrote one."""
    path = folder / TRAINING_SUMMARY
    return json.loads(path.read_text()) if path.exists() else None
