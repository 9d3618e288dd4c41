"""A callback that kills the training process the hard way, to test resuming (used through +callbacks.*)."""

import os
import signal

import lightning.pytorch as pl


class KillAtEpochStart(pl.Callback):
    """os._exit at the start of `epoch`: no cleanup, no finally blocks, like SIGKILL or a lost machine."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            os._exit(17)


class SigkillAtEpochStart(pl.Callback):
    """SIGKILL of the process of global rank `rank` at the start of `epoch`: under DDP the other ranks lose it
    mid-run, as when a node of a cluster job dies."""

    def __init__(self, epoch: int, rank: int = 0) -> None:
        self.epoch = epoch
        self.rank = rank

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch and trainer.global_rank == self.rank:
            os.kill(os.getpid(), signal.SIGKILL)
