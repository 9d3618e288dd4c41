"""`compressor=kd`: Hinton knowledge distillation (the benchmark paper's KD).

The deployed model is a fresh student (the run's `model`, from the same initial weights as its from-scratch
baseline) trained for `epochs` on `alpha * CE + (1 - alpha) * T^2 * KL` against a frozen `teacher`. The student has
the baseline's architecture, so params, FLOPs and latency stay the same: what distillation may buy is accuracy
at the same budget (set `trainer.max_epochs` equal to `epochs` for the paper's comparison).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch.nn as nn
from omegaconf import OmegaConf
from pydantic import Field

from edgecomp.compress.context import CompressionContext, RunSpec
from edgecomp.compress.distillation.teacher_distillation import TeacherDistillation, TeacherDistillationSettings
from edgecomp.config import build
from edgecomp.errors import ConfigError
from edgecomp.lit.hinton_distillation_module import HintonDistillationModule
from edgecomp.models.checkpoint import load_weights


class HintonSettings(TeacherDistillationSettings):
    T: float = Field(10.0, gt=0, description="the distillation temperature, > 0 (the paper: 10)")
    alpha: float = Field(0.1, ge=0, le=1, description="the cross-entropy's weight in [0, 1] (the paper: 0.1)")
    epochs: int = Field(5, ge=1, description="a whole number of the student's training epochs >= 1 (the paper: 5)")
    student: dict[str, Any] | None = Field(
        None,
        description="a model config to distil the trained model into (null: the student is the model, the teacher "
        "`teacher`)",
    )


class KnowledgeDistillation(TeacherDistillation):
    """`T` (the temperature), `alpha` (the cross-entropy's weight), `epochs` and `lr` (null: the run optimizer's) of
    the student's training; `teacher_checkpoint`: the teacher's weights, or null to train `teacher` like a baseline."""

    settings_class = HintonSettings
    options: HintonSettings

    def __init__(self, name: str, **settings: Any) -> None:
        super().__init__(name, **settings)
        # The benchmark paper's direction: the trained `model` is the teacher, distilled into this student (a model
        # config, built from scratch under the run seed). None: the student is `model` and the teacher `teacher`.
        student = self.options.student
        self.student_config = None if student is None else OmegaConf.create(student)
        self.epoch_losses: list[float] = []  # set by compress()

    def check(self, spec: RunSpec) -> None:
        if self.student_config is not None:
            if spec.task != "classification" or self.student_config.num_classes != spec.model.num_classes:
                raise ConfigError(
                    f"compressor=kd distils a classifier into a classifier with the same classes; got dataset="
                    f"{spec.dataset} ({spec.task}) and compressor.student.num_classes={self.student_config.num_classes}"
                )
            if self.options.student_start is not None:
                raise ConfigError(
                    f"compressor.student_start={self.options.student_start} has no meaning with compressor.student: "
                    "the student is a new network of another architecture, built from its config"
                )
            return  # the teacher is the trained baseline
        teacher = self.required_teacher(spec, "teacher=<model> (e.g. teacher=mobilenetv3_large_100)")
        if spec.task != "classification" or "family" in teacher:  # detector configs name their adapter family
            raise ConfigError(
                f"compressor=kd distils a classifier from a classifier's logits; got dataset={spec.dataset} "
                f"({spec.task}) and teacher={teacher.name}"
            )
        self.check_same_classes(spec, teacher)
        self.check_teacher_checkpoint()

    @property
    def replaces_network(self) -> bool:
        return self.student_config is not None  # the trained model teaches a student of another architecture

    def prepare(self, context: CompressionContext) -> None:
        """Load the teacher: from `teacher_checkpoint`, or trained with this run's settings (once, then reused).
        With a `student` config the teacher is the trained baseline, which compress() receives."""
        if self.student_config is None:
            super().prepare(context)

    def load_teacher(self, context: CompressionContext, checkpoint: Path) -> tuple[nn.Module, str]:
        training = context.teacher_training()
        return load_weights(training.new_model(), checkpoint), training.model_name

    def compress(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        # Hinton KD trains the student from scratch, like its baseline: `model` (the trained baseline) only fixes
        # the architecture, and the student starts from the very weights the baseline started from. In a recipe
        # (context.warm_start) it recovers `model` itself.
        training, options = context.training, self.options
        if self.student_config is not None:
            self.teacher, self.teacher_name = model, training.model_name
        if self.teacher is None:
            raise RuntimeError("KnowledgeDistillation.compress called before prepare()")
        lr = options.lr if options.lr is not None else training.default_lr
        if self.student_config is None:
            student = self.student(model, context)
        else:
            pl.seed_everything(training.seed, workers=True, verbose=False)
            student = build(self.student_config)
        module = HintonDistillationModule(
            student,
            self.teacher,
            optimizer=training.optimizer(lr),
            scheduler=training.scheduler(options.epochs),  # spanning the distillation, not the baseline's max_epochs
            temperature=options.T,
            alpha=options.alpha,
            num_classes=int(context.model_config.num_classes),
        )
        self.train_student(training, module, options.epochs)
        self.epoch_losses = module.epoch_losses
        # The T^2-scaled soft-target gradients are up to T times the cross-entropy's while the student is far from
        # the teacher: a learning rate that trains the baseline can make the student diverge.
        self.check_converged(
            self.epoch_losses, "the distillation loss", f"lower the student's learning rate, compressor.lr={lr}"
        )
        return module.student.cpu()

    def settings(self) -> dict[str, Any]:
        options = self.options
        return {
            "T": options.T,
            "alpha": options.alpha,
            "epochs": options.epochs,
            "lr": options.lr,  # null: the run optimizer's
            "student": self.student_config.name if self.student_config is not None else None,
        }

    def results(self) -> dict[str, Any]:
        return {
            **super().results(),
            # The mean training loss (the whole objective) over the first and the last epoch: it should fall.
            "loss": {"first": self.epoch_losses[0], "last": self.epoch_losses[-1]} if self.epoch_losses else None,
        }
