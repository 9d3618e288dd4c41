"""train.py: train a model, save its checkpoint, evaluate that checkpoint on the target device, record it."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from edgecomp.lit import distributed
from edgecomp.models.checkpoint import load_weights
from edgecomp.pipelines.common import Job, run_job
from edgecomp.pipelines.measure import build_record


def train(job: Job) -> dict[str, Any] | None:
    checkpoint = job.training.fit()
    if not distributed.release_workers():  # trainer=ddp: the other ranks are done; rank 0 measures alone
        return None
    # Evaluate what was saved, not what is in memory: a fresh model loaded from the checkpoint file.
    deployed = load_weights(job.new_model(), checkpoint)
    record = build_record(job.config, job.measuring().device, job.measure(deployed), checkpoint)
    record.training = job.trained_summary()
    return job.publish(record, "train")


def run(cfg: DictConfig) -> dict[str, Any] | None:
    return run_job(cfg, train)
