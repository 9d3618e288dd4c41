"""What every distillation compressor shares (Hinton KD, the detection distillers): a frozen teacher, looked up or
trained once; a student that starts where its from-scratch baseline started (or, in a recipe, from the model it is
given); its training beside the teacher; and the check that the training did not diverge.

The teacher's weights, in this order: the compressor's `teacher_checkpoint`, the context's (a recipe whose teacher is
the unpruned baseline), or the teacher trained once with this run's settings (Training.trained_checkpoint: reused
by every later run that needs it). A loss that became infinite or NaN is a TrainingDiverged, a runtime failure of
settings that were accepted, not a ConfigError.
"""

from __future__ import annotations

import math
import warnings
from abc import abstractmethod
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch.nn as nn
from omegaconf import DictConfig
from pydantic import Field

from edgecomp.compress.compressor import Compressor
from edgecomp.compress.context import CompressionContext, RunSpec
from edgecomp.errors import CheckpointError, ConfigError, TrainingDiverged
from edgecomp.lit.training import Training
from edgecomp.settings import Settings


class TeacherDistillationSettings(Settings):
    lr: float | None = Field(None, gt=0, description="the student's learning rate, > 0 (null: the run optimizer's)")
    teacher_checkpoint: str | None = Field(
        None, description="a file of the teacher's weights (null: train `teacher` once with this run's settings)"
    )
    student_start: Literal["initial", "input"] | None = Field(
        None,
        description="initial (the baseline's initial weights), input (the model the compressor is given: the "
        "trained baseline, or a recipe's previous stage) or null (initial alone, input in a recipe)",
    )


class TeacherDistillation(Compressor):
    """A student trained against a frozen teacher (see the module docstring); the method is the subclass's."""

    options: TeacherDistillationSettings

    def __init__(self, name: str, **settings: Any) -> None:
        super().__init__(name, **settings)
        self.teacher: nn.Module | None = None  # set by prepare()
        self.teacher_name: str | None = None
        self.teacher_used: Path | None = None  # the teacher's weights prepare() loaded
        self.student_start: str | None = None  # set by compress(): "initial" weights, or the "input" model

    @property
    def teacher_checkpoint(self) -> Path | None:
        checkpoint = self.options.teacher_checkpoint
        return Path(checkpoint) if checkpoint else None

    # ---------------------------------------------------------------------------------------------- the run

    def required_teacher(self, spec: RunSpec, hint: str) -> DictConfig:
        """The run's teacher config; refused if there is none, `hint` saying which to pick."""
        if spec.teacher is None:
            raise ConfigError(f"compressor={self.name} needs a teacher: pick {hint}")
        return spec.teacher

    @staticmethod
    def check_same_classes(spec: RunSpec, teacher: DictConfig) -> None:
        """Teacher and student predict the same classes."""
        if teacher.num_classes != spec.model.num_classes:
            raise ConfigError(
                f"teacher.num_classes={teacher.num_classes} but model.num_classes={spec.model.num_classes}: teacher "
                "and student must predict the same classes"
            )

    def check_teacher_checkpoint(self) -> None:
        """A configured `teacher_checkpoint` exists."""
        if self.teacher_checkpoint is not None and not self.teacher_checkpoint.is_file():
            raise CheckpointError(f"compressor.teacher_checkpoint={self.teacher_checkpoint} does not exist")

    def prepare(self, context: CompressionContext) -> None:
        """Load the teacher (see the module docstring), once: later compressions of the run reuse its training."""
        self.teacher_used = (
            self.teacher_checkpoint
            or context.teacher_checkpoint
            or self.teacher_training(context).trained_checkpoint(role="teacher")
        )
        self.teacher, self.teacher_name = self.load_teacher(context, self.teacher_used)

    def teacher_training(self, context: CompressionContext) -> Training:
        """How the teacher is trained when no checkpoint is given: like the run's baseline, with `teacher` as model."""
        return context.teacher_training()

    @abstractmethod
    def load_teacher(self, context: CompressionContext, checkpoint: Path) -> tuple[nn.Module, str]:
        """The teacher with the weights of `checkpoint`, and its name for the record."""

    # ---------------------------------------------------------------------------------------------- training

    def student(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        """Where the student starts (`student_start`; null: by the context). A run of its own: from the very weights
        its from-scratch baseline started from (`model`, the trained baseline, fixes nothing but the architecture).
        A recipe's stage (context.warm_start): `model` itself, the previous stage's network, which distillation
        recovers. `input` in a run of its own: the trained baseline, trained on beside the teacher (what plain
        fine-tuning for the same epochs, compressor=finetune, is the control of)."""
        start = self.options.student_start or ("input" if context.warm_start else "initial")
        self.student_start = start
        return model if start == "input" else context.training.initial_model()

    @staticmethod
    def train_student(
        training: Training, module: pl.LightningModule, epochs: int, datamodule: pl.LightningDataModule | None = None
    ) -> None:
        """`epochs` of `module` (the student beside the frozen teacher) with the run's training, on its data or
        `datamodule` (a variant of it: batches that also carry the teacher's images)."""
        with warnings.catch_warnings():
            # Lightning warns about modules left in eval mode when training starts: the frozen teacher, on purpose.
            warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
            training.fine_tune(module, epochs, datamodule=datamodule)

    def check_converged(self, epoch_losses: list[float], loss: str, advice: str) -> None:
        """A TrainingDiverged unless every epoch's mean `loss` (e.g. "the student's loss") is finite; `advice`: what
        to lower."""
        if not epoch_losses or not all(math.isfinite(value) for value in epoch_losses):
            raise TrainingDiverged(f"compressor={self.name}: {loss} diverged (epoch means {epoch_losses}): {advice}")

    @property
    def trains(self) -> bool:
        return True

    # ---------------------------------------------------------------------------------------------- the record

    def results(self) -> dict[str, Any]:
        return {
            "teacher": self.teacher_name,
            "teacher_checkpoint": str(self.teacher_used) if self.teacher_used else None,
            "student_start": self.student_start,
        }
