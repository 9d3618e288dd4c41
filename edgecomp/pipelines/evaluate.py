"""evaluate.py: evaluate a saved checkpoint on the dataset and the target device, record it."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from edgecomp.config import build
from edgecomp.models.checkpoint import load_weights
from edgecomp.pipelines.common import Job, run_job
from edgecomp.pipelines.measure import build_record, measure_classifier


def evaluate(job: Job) -> dict[str, Any]:
    cfg = job.cfg
    model = load_weights(build(cfg.model), cfg.checkpoint)
    measurement = measure_classifier(model, job.datamodule, job.device, job.protocol, cfg.dataset.num_classes)
    record = build_record(job.config, job.device, measurement, cfg.checkpoint)
    return job.publish(record, "evaluate")


def run(cfg: DictConfig) -> dict[str, Any]:
    return run_job(cfg, evaluate)
