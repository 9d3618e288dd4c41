"""What the detection distillers (`compressor=scalekd`, `fitnet`, `od2017`) share: the teacher, the student, the
training, and what the record says.

The deployed model is a fresh student -- the run's `model`, from the very initial weights its from-scratch baseline
started from (edgecomp.lit.training.Training.initial_model) -- trained for `epochs` (by default the baseline's
trainer.max_epochs, the same budget) on L = alpha L_feat + beta L_cls + gamma L_bbox + L_det against a frozen
`teacher` of the same detector family (trained once on the run's dataset like a baseline, or
`teacher_checkpoint`). Everything the distiller adds (adapters, ScaleKD's SDF and assistant) is training-only: the
student alone is returned, with the baseline's architecture, parameters and FLOPs (the paper's "no extra cost at
test time"), which the record's `distill` field checks and says.
"""

from __future__ import annotations

import math
import warnings
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch.nn as nn
from hydra.utils import get_class
from omegaconf import DictConfig

from edgecomp.compress.compressor import Compressor
from edgecomp.compress.context import CompressionContext
from edgecomp.distill.distiller import Distiller
from edgecomp.distill.families import FamilyView, family_view, view_class
from edgecomp.distill.high_resolution import high_resolution_config, load_teacher
from edgecomp.errors import CheckpointError, ConfigError
from edgecomp.lit.detection_distillation_module import DetectionDistillationModule, DistillationSchedule, LossWeights
from edgecomp.lit.optimization import OptimizerFactory, SchedulerFactory
from edgecomp.lit.training import Training
from edgecomp.models.detection.adapter import DetectorAdapter

# The teacher's input (teacher_scale x the student's) must keep every family's pyramid grids exact.
LARGEST_STRIDE = 32


def parse_schedule(schedule: Mapping[str, Any] | None, name: str) -> DistillationSchedule:
    schedule = dict(schedule or {})
    unknown = sorted(set(schedule) - {"student_warmup", "freeze_backbone"})
    if unknown:
        raise ConfigError(f"compressor.schedule has unknown keys {unknown}: expected student_warmup, freeze_backbone")
    for key, value in schedule.items():
        if value is None or value < 0 or (value >= 1 and value != int(value)):
            raise ConfigError(
                f"compressor.schedule.{key}={value}: expected a fraction of the run in [0, 1) or a whole number of "
                f"steps >= 1 (compressor={name})"
            )
    return DistillationSchedule(**{key: float(value) for key, value in schedule.items()})


class DetectionDistillation(Compressor):
    """`teacher_scale` (the teacher's input resolution / the student's), `epochs` (null: trainer.max_epochs), `lr`
    (null: the run optimizer's), `teacher_checkpoint` (null: train `teacher` once like a baseline), `schedule`
    (student_warmup, freeze_backbone: fractions of the run or step counts) and the loss weights `alpha`, `beta`,
    `gamma` (eq. 7) of the terms the method has (`weight_keys`)."""

    # The loss weights this method has (FitNet: alpha; Chen et al.: beta, gamma; ScaleKD: all three).
    weight_keys: tuple[str, ...] = ("alpha", "beta", "gamma")
    module_class: type[DetectionDistillationModule] = DetectionDistillationModule

    def __init__(
        self,
        name: str,
        teacher_scale: float = 1.0,
        epochs: int | None = None,
        lr: float | None = None,
        teacher_checkpoint: str | None = None,
        schedule: Mapping[str, Any] | None = None,
        **weights: float,
    ) -> None:
        super().__init__(name)
        if sorted(weights) != sorted(self.weight_keys):
            raise ConfigError(
                f"compressor={name} takes the loss weights {list(self.weight_keys)}, got {sorted(weights)}"
            )
        for key, value in weights.items():
            if value is None or value < 0:
                raise ConfigError(f"compressor.{key}={value}: a loss weight must be >= 0")
        if teacher_scale is None or teacher_scale <= 0:
            raise ConfigError(f"compressor.teacher_scale={teacher_scale}: must be > 0 (the paper: 2)")
        if epochs is not None and epochs < 1:
            raise ConfigError(
                f"compressor.epochs={epochs}: the student needs at least 1 epoch (null: trainer.max_epochs)"
            )
        if lr is not None and lr <= 0:
            raise ConfigError(f"compressor.lr={lr}: the student's learning rate must be > 0 (null: the run's)")
        self.weights = LossWeights(**{key: float(value) for key, value in weights.items()})
        self.teacher_scale = float(teacher_scale)
        self.epochs = epochs
        self.lr = lr
        self.teacher_checkpoint = Path(teacher_checkpoint) if teacher_checkpoint else None
        self.schedule = parse_schedule(schedule, name)
        self.teacher: nn.Module | None = None  # set by prepare()
        self.teacher_name: str | None = None
        self.teacher_used: Path | None = None  # the teacher's weights prepare() loaded
        self.student_start: str | None = None  # set by compress(): "initial" weights, or the "input" model
        self.distiller_params: int | None = None  # set by compress()
        self.deployment: dict[str, Any] = {}
        self.term_summary: dict[str, Any] = {}

    # ---------------------------------------------------------------------------------------------- the config

    def check(self, cfg: DictConfig) -> None:
        name = self.name
        if cfg.task != "detection":
            raise ConfigError(
                f"compressor={name} distils a detector; dataset={cfg.dataset.name} is a {cfg.task} dataset"
            )
        teacher = cfg.get("teacher")
        if teacher is None:
            raise ConfigError(
                f"compressor={name} needs a teacher: pick teacher=<detector> of the model's family (e.g. "
                f"model=yolov8n teacher=yolov8s, or model=retinanet teacher=retinanet teacher.backbone=resnet50)"
            )
        if "family" not in teacher:
            raise ConfigError(f"teacher={teacher.name} is not a detector: compressor={name} needs a detector teacher")
        if teacher.family != cfg.model.family:
            raise ConfigError(
                f"compressor={name} distils between detectors of one family: teacher={teacher.name} is a "
                f"{teacher.family.rsplit('.', 1)[-1]} but model={cfg.model.name} is a "
                f"{cfg.model.family.rsplit('.', 1)[-1]} (pick a teacher of the model's family; backbones may differ)"
            )
        view = view_class(get_class(cfg.model.family))
        if view is None:
            raise ConfigError(
                f"compressor={name} has no distillation view of model.family={cfg.model.family} "
                "(edgecomp.distill.families): RetinaNet, FCOS, Faster R-CNN, YOLOv8 and mmdet's RetinaNet can be "
                "distilled"
            )
        for role, node in (("model", cfg.model), ("teacher", teacher)):
            if (reason := view.refusal(node)) is not None:
                raise ConfigError(f"compressor={name} cannot distil {role}={node.name}: {reason}")
        if teacher.num_classes != cfg.model.num_classes:
            raise ConfigError(
                f"teacher.num_classes={teacher.num_classes} but model.num_classes={cfg.model.num_classes}: teacher and "
                "student must predict the same classes"
            )
        teacher_size = cfg.model.input_size * self.teacher_scale
        if teacher_size != int(teacher_size) or int(teacher_size) % LARGEST_STRIDE:
            raise ConfigError(
                f"compressor.teacher_scale={self.teacher_scale} gives the teacher a {teacher_size:g} px input (student "
                f"{cfg.model.input_size} px): it must be a whole multiple of {LARGEST_STRIDE}, so that every pyramid "
                "level's grid is exact"
            )
        if self.teacher_checkpoint is not None and not self.teacher_checkpoint.is_file():
            raise CheckpointError(f"compressor.teacher_checkpoint={self.teacher_checkpoint} does not exist")

    def prepare(self, context: CompressionContext) -> None:
        """Load the teacher: from `teacher_checkpoint`, or trained once with this run's dataset, trainer, optimizer
        and seed, on the images upsampled by `teacher_scale` (what it sees when distilling), then reused."""
        self.teacher_used = (
            self.teacher_checkpoint
            or context.teacher_checkpoint
            or self.teacher_training(context).trained_checkpoint(role="teacher")
        )
        self.teacher = load_teacher(context.teacher_config, self.teacher_used)
        self.teacher_name = context.teacher_config.name

    def teacher_training(self, context: CompressionContext) -> Training:
        """The teacher's training at `teacher_scale` x the data's resolution (edgecomp.distill.high_resolution):
        its run folder is `<dataset>-<teacher>_x<scale>-...`; at scale 1 the plain teacher, in the folder that
        `train.py model=<teacher>` trains into."""
        if self.teacher_scale == 1:
            return context.teacher_training()
        return context.teacher_training(high_resolution_config(context.teacher_config, self.teacher_scale))

    # ---------------------------------------------------------------------------------------------- training

    @abstractmethod
    def build_distiller(self, student: FamilyView, teacher: FamilyView) -> Distiller:
        """The method's distiller for this pair of networks."""

    def module_arguments(self) -> dict[str, Any]:
        """Keyword arguments of `module_class` beyond the shared ones (ScaleKD: the assistant's optimizer)."""
        return {}

    def training_module(
        self,
        student: DetectorAdapter,
        teacher: DetectorAdapter,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        warmup_steps: int = 100,
        max_grad_norm: float | None = 10.0,
    ) -> DetectionDistillationModule:
        """The LightningModule that distils `teacher` into `student` with this method's distiller and settings."""
        distiller = self.build_distiller(family_view(student), family_view(teacher))
        self.distiller_params = sum(p.numel() for p in distiller.parameters())
        return self.module_class(
            student,
            teacher,
            distiller,
            self.weights,
            optimizer=optimizer,
            scheduler=scheduler,
            teacher_scale=self.teacher_scale,
            schedule=self.schedule,
            warmup_steps=warmup_steps,
            max_grad_norm=max_grad_norm,
            **self.module_arguments(),
        )

    def compress(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        if self.teacher is None:
            raise RuntimeError(f"{type(self).__name__}.compress called before prepare()")
        training = context.training
        epochs = self.epochs or training.max_epochs  # null: the baseline's budget
        lr = self.lr if self.lr is not None else training.default_lr  # null: the baseline's
        # Trained like its baseline (DetectionModule's warm-up and clipping), from the very weights the baseline
        # started from: `model`, the trained baseline, fixes nothing but the architecture. In a recipe
        # (context.warm_start) the student is `model` itself: recovery of the previous stage's (pruned) network.
        student = model if context.warm_start else training.initial_model()
        self.student_start = "input" if context.warm_start else "initial"
        module = self.training_module(
            student,
            self.teacher,
            optimizer=training.optimizer(lr),
            scheduler=training.scheduler(epochs),  # spanning the distillation's epochs
            warmup_steps=training.module_setting("warmup_steps", 100),
            max_grad_norm=training.module_setting("max_grad_norm", 10.0),
        )
        with warnings.catch_warnings():
            # Lightning warns about modules left in eval mode when training starts: the frozen teacher, on purpose.
            warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
            training.fine_tune(module, epochs)
        self.term_summary = module.term_summary()
        final = module.epoch_means.get("loss", [])
        if not final or not all(math.isfinite(value) for value in final):
            raise ConfigError(
                f"compressor={self.name}: the student's loss diverged (epoch means {final}): lower compressor.lr="
                f"{lr} or the loss weights ({', '.join(f'compressor.{k}' for k in self.weight_keys)})"
            )
        deployed = module.student.cpu()
        self.deployment = deployment_check(deployed, model)  # shapes and counts: training does not change them
        return deployed

    # ---------------------------------------------------------------------------------------------- the record

    @property
    def trains(self) -> bool:
        return True

    def settings(self) -> dict[str, Any]:
        return {
            **{key: getattr(self.weights, key) for key in self.weight_keys},
            "teacher_scale": self.teacher_scale,
            "epochs": self.epochs,  # null: trainer.max_epochs
            "lr": self.lr,  # null: the run optimizer's
            "schedule": {
                "student_warmup": self.schedule.student_warmup,
                "freeze_backbone": self.schedule.freeze_backbone,
            },
            **self.method_settings(),
        }

    def results(self) -> dict[str, Any]:
        return {
            "teacher": self.teacher_name,
            "teacher_checkpoint": str(self.teacher_used) if self.teacher_used else None,
            "student_start": self.student_start,
        }

    def method_settings(self) -> dict[str, Any]:
        return {}

    def record_fields(self) -> dict[str, Any]:
        return {
            "distill": {
                "method": self.name,
                **self.deployment,
                "distiller_params": self.distiller_params,  # training-only: adapters, SDF, CSA; none deployed
                **self.term_summary,
            }
        }


def deployment_check(deployed: nn.Module, baseline: nn.Module) -> dict[str, Any]:
    """What is deployed against the baseline student: the same architecture (parameter names and shapes) and the
    same parameter count, i.e. nothing of the distiller left in it."""
    deployed_shapes = {k: tuple(v.shape) for k, v in deployed.state_dict().items()}
    baseline_shapes = {k: tuple(v.shape) for k, v in baseline.state_dict().items()}
    deployed_params = sum(p.numel() for p in deployed.parameters())
    baseline_params = sum(p.numel() for p in baseline.parameters())
    return {
        "deployed_params": deployed_params,
        "deployed_params_equal_baseline": deployed_params == baseline_params,
        "deployed_architecture_equal_baseline": deployed_shapes == baseline_shapes,
    }
