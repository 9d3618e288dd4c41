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

from abc import abstractmethod
from pathlib import Path
from typing import Annotated, Any, ClassVar

import torch.nn as nn
from hydra.utils import get_class
from pydantic import Field

from edgecomp.compress.context import CompressionContext, RunSpec
from edgecomp.compress.distillation.teacher_distillation import TeacherDistillation, TeacherDistillationSettings
from edgecomp.data.detection.detection_datamodule import DetectionDataModule, teacher_image_size
from edgecomp.distill.distiller import Distiller
from edgecomp.distill.families import FamilyView, family_view, view_class
from edgecomp.distill.high_resolution import high_resolution_config, load_teacher, with_input_size
from edgecomp.errors import ConfigError
from edgecomp.lit.detection_distillation_module import (
    DetectionDistillationModule,
    DistillationSchedule,
    LossWeights,
    TeacherInput,
)
from edgecomp.lit.optimization import OptimizerFactory, SchedulerFactory
from edgecomp.lit.training import Training
from edgecomp.models.detection.adapter import DetectorAdapter

# The teacher's input (teacher_scale x the student's) must keep every family's pyramid grids exact.
LARGEST_STRIDE = 32
# eq. 7's loss weights, in the order the record gives them
WEIGHT_KEYS = ("alpha", "beta", "gamma")
LossWeight = Annotated[
    float, Field(ge=0, description="a loss weight >= 0 (eq. 7: alpha weighs L_feat, beta L_cls, gamma L_bbox)")
]


class DetectionDistillationSettings(TeacherDistillationSettings):
    """What every detection distiller takes; each method adds its loss weights (LossWeight fields) and its own."""

    teacher_scale: float = Field(
        1.0, gt=0, description="the teacher's input resolution / the student's, > 0 (the paper: 2)"
    )
    teacher_input: TeacherInput = Field(
        "native",
        description="native (the teacher's images letterboxed from the stored image at teacher_scale x the "
        "resolution) or upsampled (the student's batch upsampled bilinearly)",
    )
    epochs: int | None = Field(
        None, ge=1, description="a whole number of the student's training epochs >= 1 (null: trainer.max_epochs)"
    )
    schedule: DistillationSchedule = Field(
        default_factory=DistillationSchedule,
        description="a mapping of student_warmup and freeze_backbone, each a fraction of the run in [0, 1) or a "
        "whole number of steps >= 1",
    )


class DetectionDistillation(TeacherDistillation):
    """`teacher_scale` (the teacher's input resolution / the student's), `epochs` (null: trainer.max_epochs), `lr`
    (null: the run optimizer's), `teacher_checkpoint` (null: train `teacher` once like a baseline), `schedule`
    (student_warmup, freeze_backbone: fractions of the run or step counts) and the loss weights `alpha`, `beta`,
    `gamma` (eq. 7) of the terms the method has (its settings' LossWeight fields)."""

    # A method's own settings class extends this one (its loss weights, its own settings)
    settings_class: ClassVar[type[DetectionDistillationSettings]] = DetectionDistillationSettings
    options: DetectionDistillationSettings
    module_class: type[DetectionDistillationModule] = DetectionDistillationModule

    def __init__(self, name: str, **settings: Any) -> None:
        super().__init__(name, **settings)
        self.weights = LossWeights(**{key: getattr(self.options, key) for key in self.weight_keys})
        self.distiller_params: int | None = None  # set by compress()
        self.deployment: dict[str, Any] = {}
        self.term_summary: dict[str, Any] = {}

    @property
    def weight_keys(self) -> tuple[str, ...]:
        """The loss weights this method has (FitNet: alpha; Chen et al.: beta, gamma; ScaleKD: all three)."""
        return tuple(key for key in WEIGHT_KEYS if key in self.settings_class.model_fields)

    @property
    def teacher_scale(self) -> float:
        return self.options.teacher_scale

    @property
    def native_teacher(self) -> bool:
        """The teacher sees the stored image at its own resolution (not the student's upsampled)."""
        return self.options.teacher_input == "native" and self.teacher_scale != 1

    # ---------------------------------------------------------------------------------------------- the run

    def check(self, spec: RunSpec) -> None:
        name = self.name
        if spec.task != "detection":
            raise ConfigError(f"compressor={name} distils a detector; dataset={spec.dataset} is a {spec.task} dataset")
        teacher = self.required_teacher(
            spec,
            "teacher=<detector> of the model's family (e.g. model=yolov8n teacher=yolov8s, or model=retinanet "
            "teacher=retinanet teacher.backbone=resnet50)",
        )
        if "family" not in teacher:
            raise ConfigError(f"teacher={teacher.name} is not a detector: compressor={name} needs a detector teacher")
        model = spec.model
        if teacher.family != model.family:
            raise ConfigError(
                f"compressor={name} distils between detectors of one family: teacher={teacher.name} is a "
                f"{teacher.family.rsplit('.', 1)[-1]} but model={model.name} is a "
                f"{model.family.rsplit('.', 1)[-1]} (pick a teacher of the model's family; backbones may differ)"
            )
        view = view_class(get_class(model.family))
        if view is None:
            raise ConfigError(
                f"compressor={name} has no distillation view of model.family={model.family} "
                "(edgecomp.distill.families): RetinaNet, FCOS, Faster R-CNN, YOLOv8 and mmdet's RetinaNet can be "
                "distilled"
            )
        for role, node in (("model", model), ("teacher", teacher)):
            if (reason := view.refusal(node)) is not None:
                raise ConfigError(f"compressor={name} cannot distil {role}={node.name}: {reason}")
        self.check_same_classes(spec, teacher)
        teacher_size = model.input_size * self.teacher_scale
        if teacher_size != int(teacher_size) or int(teacher_size) % LARGEST_STRIDE:
            raise ConfigError(
                f"compressor.teacher_scale={self.teacher_scale} gives the teacher a {teacher_size:g} px input (student "
                f"{model.input_size} px): it must be a whole multiple of {LARGEST_STRIDE}, so that every pyramid "
                "level's grid is exact"
            )
        self.check_teacher_checkpoint()

    def teacher_size(self, context: CompressionContext) -> int:
        return teacher_image_size(context.image_size, self.teacher_scale)

    def teacher_training(self, context: CompressionContext) -> Training:
        """The teacher's training, once, with this run's dataset, trainer, optimizer and seed, on what it sees when
        distilling. At scale 1: the plain teacher, in the folder `train.py model=<teacher>` trains into. `native`:
        the teacher built for `teacher_scale` x the input size, trained on the stored images letterboxed to that
        size (the run `train.py model=<teacher> model.input_size=<size> dataset.datamodule.image_size=<size>`
        makes). `upsampled`: the teacher behind UpsampledInputDetector, trained on the student's images upsampled
        (edgecomp.distill.high_resolution; run folder `<dataset>-<teacher>_x<scale>-...`)."""
        teacher = context.required_teacher_config()
        if self.teacher_scale == 1:
            return context.teacher_training()
        if self.native_teacher:
            size = self.teacher_size(context)
            return context.training.at_image_size(size).for_model("teacher", with_input_size(teacher, size))
        return context.teacher_training(high_resolution_config(teacher, self.teacher_scale))

    def load_teacher(self, context: CompressionContext, checkpoint: Path) -> tuple[nn.Module, str]:
        teacher = context.required_teacher_config()
        if self.native_teacher:
            return load_teacher(with_input_size(teacher, self.teacher_size(context)), checkpoint), teacher.name
        return load_teacher(teacher, checkpoint), teacher.name

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
            teacher_input=self.options.teacher_input,
            schedule=self.options.schedule,
            warmup_steps=warmup_steps,
            max_grad_norm=max_grad_norm,
            **self.module_arguments(),
        )

    def compress(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        teacher = self.teacher
        if teacher is None:
            raise RuntimeError(f"{type(self).__name__}.compress called before prepare()")
        training, options = context.training, self.options
        epochs = options.epochs or training.max_epochs  # null: the baseline's budget
        lr = options.lr if options.lr is not None else training.default_lr  # null: the baseline's
        student = self.student(model, context)
        if not isinstance(student, DetectorAdapter) or not isinstance(teacher, DetectorAdapter):
            raise TypeError(
                f"compressor={self.name} distils a detector into a detector (DetectorAdapter); got student "
                f"{type(student).__name__}, teacher {type(teacher).__name__}"
            )
        # Trained like its baseline (DetectionModule's warm-up and clipping)
        module = self.training_module(
            student,
            teacher,
            optimizer=training.optimizer(lr),
            scheduler=training.scheduler(epochs),  # spanning the distillation's epochs
            warmup_steps=training.module_setting("warmup_steps", 100),
            max_grad_norm=training.module_setting("max_grad_norm", 10.0),
        )
        # A native teacher's images come with each batch, resized from the stored images under the same augmentation
        datamodule = None
        if self.native_teacher:
            if not isinstance(context.datamodule, DetectionDataModule):
                raise TypeError(f"compressor={self.name} needs a DetectionDataModule, got {type(context.datamodule)}")
            datamodule = context.datamodule.with_teacher_scale(self.teacher_scale)
        self.train_student(training, module, epochs, datamodule)
        self.term_summary = module.term_summary()
        weights = ", ".join(f"compressor.{key}" for key in self.weight_keys)
        self.check_converged(
            module.epoch_means.get("loss", []),
            "the student's loss",
            f"lower compressor.lr={lr} or the loss weights ({weights})",
        )
        deployed = module.student.cpu()
        self.deployment = deployment_check(deployed, model)  # shapes and counts: training does not change them
        return deployed

    # ---------------------------------------------------------------------------------------------- the record

    def settings(self) -> dict[str, Any]:
        options = self.options
        return {
            **{key: getattr(self.weights, key) for key in self.weight_keys},
            "teacher_scale": options.teacher_scale,
            "teacher_input": options.teacher_input,
            "epochs": options.epochs,  # null: trainer.max_epochs
            "lr": options.lr,  # null: the run optimizer's
            "schedule": options.schedule.model_dump(),
            **self.method_settings(),
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
