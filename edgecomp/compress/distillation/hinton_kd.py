"""`compressor=kd`: Hinton knowledge distillation (the benchmark paper's KD).

The deployed model is a fresh student (the run's `model`, from the same initial weights as its from-scratch
baseline) trained for `epochs` on `alpha * CE + (1 - alpha) * T^2 * KL` against a frozen `teacher`. The student has
the baseline's architecture, so params, FLOPs and latency stay the same: what distillation may buy is accuracy
at the same budget (set `trainer.max_epochs` equal to `epochs` for the paper's comparison).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch.nn as nn
from omegaconf import DictConfig

from edgecomp.compress.compressor import Compressor
from edgecomp.compress.context import CompressionContext
from edgecomp.config import build
from edgecomp.errors import CheckpointError, ConfigError
from edgecomp.lit.hinton_distillation_module import HintonDistillationModule
from edgecomp.models.checkpoint import load_weights


class KnowledgeDistillation(Compressor):
    """`T` (the temperature), `alpha` (the cross-entropy's weight), `epochs` and `lr` (null: the run optimizer's) of
    the student's training; `teacher_checkpoint`: the teacher's weights, or null to train `teacher` like a baseline."""

    def __init__(
        self,
        name: str,
        T: float = 10.0,
        alpha: float = 0.1,
        epochs: int = 5,
        lr: float | None = None,
        teacher_checkpoint: str | None = None,
        student: DictConfig | None = None,
    ) -> None:
        super().__init__(name)
        if T <= 0:
            raise ConfigError(f"compressor.T={T}: the distillation temperature must be > 0 (paper: 10)")
        if not 0 <= alpha <= 1:
            raise ConfigError(f"compressor.alpha={alpha}: the cross-entropy weight must be in [0, 1] (paper: 0.1)")
        if epochs < 1:
            raise ConfigError(f"compressor.epochs={epochs}: the student needs at least 1 epoch (paper: 5)")
        if lr is not None and lr <= 0:
            raise ConfigError(f"compressor.lr={lr}: the student's learning rate must be > 0 (null: the run's)")
        self.temperature = float(T)
        self.alpha = float(alpha)
        self.epochs = int(epochs)
        self.lr = lr
        self.teacher_checkpoint = Path(teacher_checkpoint) if teacher_checkpoint else None
        # The benchmark paper's direction: the trained `model` is the teacher, distilled into this student (a model
        # config, built from scratch under the run seed). None: the student is `model` and the teacher `teacher`.
        self.student_config = student
        self.teacher: nn.Module | None = None  # set by prepare()
        self.teacher_used: Path | None = None  # the teacher's weights prepare() loaded
        self.student_start: str | None = None  # set by compress(): "initial" weights, or the "input" model
        self.teacher_name: str | None = None
        self.epoch_losses: list[float] = []  # set by compress()

    def check(self, cfg: DictConfig) -> None:
        if self.student_config is not None:
            if cfg.task != "classification" or self.student_config.num_classes != cfg.model.num_classes:
                raise ConfigError(
                    f"compressor=kd distils a classifier into a classifier with the same classes; got dataset="
                    f"{cfg.dataset.name} ({cfg.task}) and compressor.student.num_classes={self.student_config.num_classes}"
                )
            return  # the teacher is the trained baseline
        teacher = cfg.get("teacher")
        if teacher is None:
            raise ConfigError(
                "compressor=kd needs a teacher: pick teacher=<model> (e.g. teacher=mobilenetv3_large_100)"
            )
        if cfg.task != "classification" or "family" in teacher:  # detector configs name their adapter family
            raise ConfigError(
                f"compressor=kd distils a classifier from a classifier's logits; got dataset={cfg.dataset.name} "
                f"({cfg.task}) and teacher={teacher.name}"
            )
        if teacher.num_classes != cfg.model.num_classes:
            raise ConfigError(
                f"teacher.num_classes={teacher.num_classes} but model.num_classes={cfg.model.num_classes}: teacher "
                "and student must predict the same classes"
            )
        if self.teacher_checkpoint is not None and not self.teacher_checkpoint.is_file():
            raise CheckpointError(f"compressor.teacher_checkpoint={self.teacher_checkpoint} does not exist")

    @property
    def replaces_network(self) -> bool:
        return self.student_config is not None  # the trained model teaches a student of another architecture

    def prepare(self, context: CompressionContext) -> None:
        """Load the teacher: from `teacher_checkpoint`, or trained with this run's settings (once, then reused).
        With a `student` config the teacher is the trained baseline, which compress() receives."""
        if self.student_config is not None:
            return
        training = context.teacher_training()
        self.teacher_used = (
            self.teacher_checkpoint or context.teacher_checkpoint or training.trained_checkpoint(role="teacher")
        )
        self.teacher = load_weights(training.new_model(), self.teacher_used)
        self.teacher_name = training.model_name

    def compress(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        # Hinton KD trains the student from scratch, like its baseline: `model` (the trained baseline) only fixes
        # the architecture, and the student starts from the very weights the baseline started from. In a recipe
        # (context.warm_start) it recovers `model` itself.
        training = context.training
        if self.student_config is not None:
            self.teacher, self.teacher_name = model, training.model_name
        if self.teacher is None:
            raise RuntimeError("KnowledgeDistillation.compress called before prepare()")
        lr = self.lr if self.lr is not None else training.default_lr
        if self.student_config is None:
            # A recipe's recovery stage starts from the previous stage's model; a run of its own from the very
            # weights its from-scratch baseline started from.
            student = model if context.warm_start else training.initial_model()
            self.student_start = "input" if context.warm_start else "initial"
        else:
            pl.seed_everything(training.seed, workers=True, verbose=False)
            student = build(self.student_config)
        module = HintonDistillationModule(
            student,
            self.teacher,
            optimizer=training.optimizer(lr),
            scheduler=training.scheduler(self.epochs),  # spanning the distillation, not the baseline's max_epochs
            temperature=self.temperature,
            alpha=self.alpha,
            num_classes=int(context.model_config.num_classes),
        )
        with warnings.catch_warnings():
            # Lightning warns about modules left in eval mode when training starts: the frozen teacher, on purpose.
            warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
            training.fine_tune(module, self.epochs)
        self.epoch_losses = module.epoch_losses
        if not all(math.isfinite(loss) for loss in self.epoch_losses):
            # The T^2-scaled soft-target gradients are up to T times the cross-entropy's while the student is far
            # from the teacher: a learning rate that trains the baseline can make the student diverge.
            raise ConfigError(
                f"compressor=kd: the distillation loss diverged (epoch means {self.epoch_losses}): lower the "
                f"student's learning rate, compressor.lr={lr}"
            )
        return module.student.cpu()

    @property
    def trains(self) -> bool:
        return True

    def settings(self) -> dict[str, Any]:
        return {
            "T": self.temperature,
            "alpha": self.alpha,
            "epochs": self.epochs,
            "lr": self.lr,  # null: the run optimizer's
            "student": self.student_config.name if self.student_config is not None else None,
        }

    def results(self) -> dict[str, Any]:
        return {
            "teacher": self.teacher_name,
            "teacher_checkpoint": str(self.teacher_used) if self.teacher_used else None,
            "student_start": self.student_start,
            # The mean training loss (the whole objective) over the first and the last epoch: it should fall.
            "loss": {"first": self.epoch_losses[0], "last": self.epoch_losses[-1]} if self.epoch_losses else None,
        }
