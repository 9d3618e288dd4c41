"""What a compressor is given besides its settings: a small, explicit spec of the run to check, and a context to work
in.

Everything a compressor may use is a field here: in RunSpec what its check() reads of the run before any work (the
task, the model, the teacher, the device, the evaluator's metrics), in CompressionContext what compress() works with
(the data, the device and how it scores a model, how to train, where to write). It never sees the run's whole config
or the pipeline that called it, so a compressor can be run by compress.py, by a recipe's stage, or by a test that
builds the spec and the context itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from hydra.utils import get_class
from omegaconf import DictConfig

from edgecomp.evaluate.device import TargetDevice
from edgecomp.evaluate.evaluator import Evaluator
from edgecomp.lit.training import Training

if TYPE_CHECKING:  # annotations only: the datamodule is built from the run's config
    from edgecomp.data.classification_datamodule import ClassificationDataModule
    from edgecomp.data.detection.detection_datamodule import DetectionDataModule

    # The datamodules a config builds (dataset.datamodule).
    DataModule = ClassificationDataModule | DetectionDataModule


@dataclass(frozen=True)
class RunSpec:
    """The run a compressor's check() is asked about, before any data is generated or model trained."""

    task: str  # "classification" or "detection"
    dataset: str  # the dataset's name
    image_size: int  # the data's resolution (the model's input)
    model: DictConfig  # the model's config, which a check may build (random weights: the architecture)
    teacher: DictConfig | None  # the teacher's config, if the run has one (a recipe's: the model, when it teaches)
    device: DictConfig  # the target device's config, which a check may build
    metrics: tuple[str, ...]  # what the task's evaluator reports

    @classmethod
    def from_config(cls, cfg: DictConfig) -> RunSpec:
        """The spec of a composed run config (compress.py's)."""
        # dataset.evaluator configures the run's Evaluator (what start_job builds as job.evaluator)
        evaluator = cast(type[Evaluator], get_class(cfg.dataset.evaluator._target_))
        return cls(
            task=str(cfg.task),
            dataset=str(cfg.dataset.name),
            image_size=int(cfg.dataset.image_size),
            model=cfg.model,
            teacher=cfg.get("teacher"),
            device=cfg.device,
            metrics=tuple(evaluator.metric_names),
        )


@dataclass(frozen=True)
class CompressionContext:
    task: str  # "classification" or "detection"
    model_config: DictConfig  # the compressed model's config (its name; a detector's family)
    teacher_config: DictConfig | None  # the config's `teacher` group, if it has one
    datamodule: DataModule  # training split (fine-tunes, calibration), evaluation split (scores)
    device: TargetDevice  # where the result runs
    evaluator: Evaluator  # the task's metrics (FastNAS scores its candidates with it)
    training: Training  # how to train: fine-tunes, fresh initial weights, a teacher trained on demand
    work_dir: Path  # where this compression writes its files (artifacts, search checkpoints)
    # Where the device's runtime keeps the files it deploys, each named by the weights it holds (paths.deployed):
    # a file a compressor deploys there (the FP32 ONNX export a quantizer starts from) is the one the measurement of
    # the same weights reuses. None: work_dir.
    deploy_dir: Path | None = None
    # In a recipe: the model given to compress() is where a distillation student starts (the previous stage's
    # weights and architecture), not a fresh initialisation as in a distillation run of its own.
    warm_start: bool = False
    # The teacher's weights when no compressor setting names them: in a recipe without a `teacher`, the unpruned
    # baseline's checkpoint (teacher_config is then the model's own config). None: train the teacher.
    teacher_checkpoint: Path | None = None

    @property
    def image_size(self) -> int:
        return int(self.datamodule.image_size)

    def required_teacher_config(self) -> DictConfig:
        """`teacher_config`; an error if the run has none."""
        if self.teacher_config is None:
            raise RuntimeError("the run config has no `teacher`; the compressor's check() should have refused it")
        return self.teacher_config

    def teacher_training(self, node: DictConfig | None = None) -> Training:
        """The training of the teacher (`node`: a variant of its config, e.g. at another resolution)."""
        teacher = self.required_teacher_config()
        return self.training.for_model("teacher", node if node is not None else teacher)
