"""evaluate.py: evaluate a saved checkpoint on the dataset and the target device, or score a detection results
file against the dataset; record it. With report=DIR: write the table and Pareto plot of DIR's records instead."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from edgecomp.config import build
from edgecomp.errors import ConfigError
from edgecomp.evaluate.coco import coco_metrics, load_predictions
from edgecomp.evaluate.record import Record
from edgecomp.models.checkpoint import load_model
from edgecomp.pipelines.common import Job, run_job
from edgecomp.pipelines.measure import build_record, record_header


def evaluate(job: Job) -> dict[str, Any]:
    cfg = job.cfg
    model = load_model(job.new_model(), cfg.checkpoint)  # plain weights, or a pruned model's ModelOpt artifact
    return job.publish(build_record(job.config, job.device, job.measure(model), cfg.checkpoint), "evaluate")


def score_predictions(job: Job) -> dict[str, Any]:
    """COCO metrics of a results file against the dataset's evaluation split, by pycocotools; no model runs, so
    the record's model, device, latency and size fields are null."""
    cfg = job.cfg
    dataset = cfg.dataset
    if dataset.split not in dataset.splits:
        raise ConfigError(
            f"dataset.split={dataset.split} is not one of {list(dataset.splits)} (dataset={dataset.name})"
        )
    index = build(dataset.reader)(split=dataset.splits[dataset.split])
    detections = load_predictions(cfg.predictions, index)
    record = Record(
        **record_header(job.config),
        artifact=str(cfg.predictions),
        model=None,
        compressor=None,
        device=None,
        hardware=None,
        metrics=coco_metrics(index, detections),
        params=None,
        flops=None,
        latency_ms=None,
        size_bytes=None,
        gzip_bytes=None,
        extra={"images": len(index.images), "detections": len(detections)},
    )
    return job.publish(record, "evaluate (predictions)")


def run(cfg: DictConfig) -> Any:
    if cfg.report is not None:
        if cfg.checkpoint is not None or cfg.predictions is not None:
            raise ConfigError(
                "report=DIR writes the report of DIR's records and evaluates nothing: drop checkpoint= and predictions="
            )
        from edgecomp.pipelines import report  # matplotlib is only needed here

        return report.run(cfg)
    if cfg.predictions is not None:
        if cfg.task != "detection":
            raise ConfigError(
                f"predictions=FILE scores detections: it needs a detection dataset, not {cfg.dataset.name}"
            )
        return run_job(cfg, score_predictions, measures_a_model=False)
    if cfg.checkpoint is None:
        raise ConfigError(
            "evaluate.py needs checkpoint=PATH (a trained model to evaluate) or predictions=FILE (a detection "
            "results file to score)"
        )
    return run_job(cfg, evaluate, trains=False)
