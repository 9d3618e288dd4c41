"""What every entry point does first (resolve, validate, build) and last (record, log, summarise)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import lightning.pytorch as pl
import torch.nn as nn
from omegaconf import DictConfig

from edgecomp.config import build, config_hash, resolved_config, run_id
from edgecomp.errors import ConfigError
from edgecomp.evaluate.artifact import ExportedModel
from edgecomp.evaluate.device import TargetDevice
from edgecomp.evaluate.evaluator import Evaluator
from edgecomp.evaluate.latency import LatencyProtocol
from edgecomp.evaluate.paired_latency import PairedTiming
from edgecomp.evaluate.record import Measurement, Record, append_record
from edgecomp.lit import distributed
from edgecomp.lit.training import Training
from edgecomp.models.detection.adapter import DetectorAdapter
from edgecomp.pipelines.measure import measure_compared, measure_model, time_deployed
from edgecomp.pipelines.summary import format_summary
from edgecomp.tracking.loggers import close_logger, log_record
from edgecomp.tracking.sweep import current_sweep

if TYPE_CHECKING:  # annotations only: the datamodule a job uses is built from its config
    from edgecomp.data.classification_datamodule import ClassificationDataModule
    from edgecomp.data.detection.detection_datamodule import DetectionDataModule

    # The datamodules a config builds (dataset.datamodule).
    DataModule = ClassificationDataModule | DetectionDataModule


class Measuring(NamedTuple):
    """What measuring a model needs: start_job builds it, unless the job measures none."""

    datamodule: DataModule
    device: TargetDevice
    protocol: LatencyProtocol
    evaluator: Evaluator


@dataclass
class Job:
    cfg: DictConfig
    config: dict[str, Any]  # resolved, plain: what the record stores
    logger: Any
    # What measuring a model needs; None for a job that measures none (scoring a predictions file).
    device: TargetDevice | None = None
    datamodule: DataModule | None = None
    protocol: LatencyProtocol | None = None
    evaluator: Evaluator | None = None
    # What the configured model loaded from model.pretrained_file (edgecomp.models.pretrained), for the record.
    weights: dict[str, Any] | None = None

    def new_model(self) -> nn.Module:
        """A fresh instance of the configured model (random init, or its pretrained_file)."""
        return build(self.cfg.model)

    def measuring(self) -> Measuring:
        """The job's dataset, device, latency protocol and evaluator; an error for a job that measures no model."""
        if self.datamodule is None or self.device is None or self.protocol is None or self.evaluator is None:
            raise RuntimeError(
                "this job measures no model (started with measures_a_model=False): it has no dataset, device, "
                "latency protocol and evaluator to measure one with"
            )
        return Measuring(self.datamodule, self.device, self.protocol, self.evaluator)

    @property
    def training(self) -> Training:
        """How this job's config trains a model (edgecomp.lit.training)."""
        return Training(self.cfg, self.config, self.datamodule, self.logger)

    def trained_summary(self) -> dict[str, Any] | None:
        """The summary of the training run this job's model came from (the run train.py trains, compress.py's
        baseline): None where the model came from a given checkpoint, or its run wrote none."""
        return None if self.cfg.get("checkpoint") else self.training.summary()

    def measure(self, model: nn.Module | ExportedModel, latency: bool = True) -> Measurement:
        """The model's measurement on the job's dataset, device and latency protocol (pipelines.measure); without
        its latency where a paired timing will give it."""
        datamodule, device, protocol, evaluator = self.measuring()
        return measure_model(model, datamodule, device, protocol, evaluator, self.deploy_dir, latency=latency)

    def measure_compared(self, models: list[nn.Module | ExportedModel]) -> tuple[list[Measurement], PairedTiming]:
        """The models measured as `measure` does, their latencies timed against each other in alternating rounds
        (pipelines.measure.measure_compared)."""
        datamodule, device, protocol, evaluator = self.measuring()
        return measure_compared(models, datamodule, device, protocol, evaluator, self.deploy_dir)

    def time_deployed(self, models: list[nn.Module | ExportedModel]) -> PairedTiming:
        """The models, deployed on the job's device, timed against each other (pipelines.measure.time_deployed)."""
        datamodule, device, protocol, _ = self.measuring()
        return time_deployed(models, datamodule, device, protocol, self.deploy_dir)

    @property
    def deploy_dir(self) -> Path:
        """Where the device's runtime keeps the files it deploys (ONNX exports), named by the weights they hold, so
        any run with the same weights reuses them (paths.deployed)."""
        return Path(self.cfg.paths.deployed)

    @property
    def artifacts_dir(self) -> Path:
        """Where this run's compressed artifacts go: one folder per (training run, compressor and device settings),
        so a sweep's jobs never overwrite one another's files and a re-run with the same config replaces its own."""
        compression = config_hash(self.config, keys=("compressor", "device"), length=8)
        return (
            Path(self.cfg.paths.results)
            / "artifacts"
            / f"{run_id(self.config)}-{self.cfg.compressor.name}-{compression}"
        )

    @property
    def records_path(self) -> Path:
        return Path(self.cfg.paths.results) / "records.jsonl"

    def publish(self, record: Record, title: str) -> dict[str, Any]:
        """Append the record to the results' records.jsonl, send it to the logger, print its summary; returns it as
        written."""
        if record.weights is None:
            record.weights = self.weights
        if (sweep := current_sweep()) is not None:
            # the multirun job this is (a search's trial): its sweep folder, number, overrides
            record.extra["sweep"] = sweep
        line = append_record(self.records_path, record)
        data = record.to_json()
        log_record(self.logger, data)
        print(format_summary(data, str(self.records_path), line, title), flush=True)
        return data


def write_atomically(path: Path, data: bytes) -> None:
    """Write beside `path`, flush to disk, rename over it: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _log_lightning_through_hydra() -> None:
    """`import lightning` gives its logger a console handler of its own, and the records also propagate to the
    root logger that Hydra set up (console and the job's log file): every line would print twice."""
    lightning_logger = logging.getLogger("lightning")
    if logging.getLogger().hasHandlers():
        for handler in list(lightning_logger.handlers):
            lightning_logger.removeHandler(handler)


def start_job(cfg: DictConfig, measures_a_model: bool = True, entry: str | None = None) -> Job:
    """Resolve and check everything that can fail cheaply before any work: missing values, the task, the
    device, the dataset root. Seeds every generator with `cfg.seed`. With a trainer that trains in several processes
    (trainer=ddp), the other ranks are then started, each running `entry` (`module:function`) on `cfg`
    (edgecomp.lit.distributed)."""
    _log_lightning_through_hydra()
    config = resolved_config(cfg)
    if cfg.task != cfg.dataset.task:
        raise ConfigError(f"task={cfg.task}, but dataset={cfg.dataset.name} is a {cfg.dataset.task} dataset")
    if not measures_a_model:
        return Job(cfg, config, logger=build(cfg.logger))
    device = build(cfg.device)
    device.check()  # a board over SSH: reached and probed now, before any data or training
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    model = build(cfg.model)
    _check_model_fits_task(model, cfg)
    _check_runtime_deploys_model(device, model, cfg)
    datamodule = build(cfg.dataset.datamodule)
    datamodule.setup("fit")
    protocol = LatencyProtocol(**config["latency"])
    evaluator = build(cfg.dataset.evaluator)
    if entry is not None and cfg.trainer.get("strategy") not in (None, "auto"):
        # the generated data is in place: the other ranks find it there
        distributed.join(build(cfg.trainer, logger=False, enable_checkpointing=False), entry, cfg)
    weights = getattr(model, "pretrained_weights", None)
    return Job(cfg, config, build(cfg.logger), device, datamodule, protocol, evaluator, weights)


def _check_model_fits_task(model: nn.Module, cfg: DictConfig) -> None:
    """A classifier on a detection dataset (or the reverse) would fail deep inside training: say it up front."""
    is_detector = isinstance(model, DetectorAdapter)
    if is_detector != (cfg.task == "detection"):
        kind, wanted = ("a detector", "detector") if is_detector else ("a classifier", "classifier")
        needed = "model=yolov8n, retinanet, fcos or faster_rcnn" if cfg.task == "detection" else "a timm classifier"
        raise ConfigError(
            f"model={cfg.model.name} is {kind}, but dataset={cfg.dataset.name} is a {cfg.task} dataset: pick "
            f"{needed} (or a {'classification' if is_detector else 'detection'} dataset for the {wanted})"
        )


def _check_runtime_deploys_model(device: TargetDevice, model: nn.Module, cfg: DictConfig) -> None:
    """A runtime of files scores a detector from its exported network's outputs: a family whose detections need
    more than `forward` (Faster R-CNN's second stage) cannot be deployed that way; say so before any work."""
    if device.runtime.runs_files and isinstance(model, DetectorAdapter) and not model.decodes_forward_outputs:
        raise ConfigError(
            f"model={cfg.model.name} cannot be deployed by device={cfg.device.name}'s runtime ({device.runtime.name}):"
            " its second stage (RoI pooling, box head, per-class NMS) runs on proposals outside the exported network,"
            " so the file's outputs are not its detections; use device=cpu_torch (eager PyTorch)"
        )


def run_job(cfg: DictConfig, work: Callable[[Job], Any], measures_a_model: bool = True, trains: bool = True) -> Any:
    """Start the job, run `work` on it, and close its logger whatever happens (a multirun's next job must
    start a W&B run of its own). A job that `trains` under trainer=ddp runs in every rank: the other ranks run
    `<work's module>.run(cfg)` (the pipeline's entry) and get None from `work` once released
    (distributed.release_workers)."""
    job = None
    try:
        job = start_job(cfg, measures_a_model, entry=f"{work.__module__}:run" if trains else None)
        return work(job)
    except BaseException:
        distributed.end(failed=True)  # a rank left waiting in a collective would wait forever
        raise
    finally:
        distributed.end()
        if job is not None:
            close_logger(job.logger)
