"""A callback that kills the training process the hard way, to test resuming (used through +callbacks.*)."""

import os

import lightning.pytorch as pl


class KillAtEpochStart(pl.Callback):
    """os._exit at the start of `epoch`: no cleanup, no finally blocks, like SIGKILL or a lost machine."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            os._exit(17)
