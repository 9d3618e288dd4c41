"""train.py: train a model, save its checkpoint, evaluate that checkpoint on the target device, record it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from edgecomp.config import build, run_id
from edgecomp.lit.callbacks import EpochReseed
from edgecomp.lit.classification import ClassificationModule
from edgecomp.models.checkpoint import load_weights
from edgecomp.pipelines.common import Job, finish_job, start_job
from edgecomp.pipelines.measure import build_record, measure_classifier

log = logging.getLogger("edgecomp")
LAST = "last.ckpt"


def checkpoint_to_resume(run_dir: Path, resume: bool) -> Path | None:
    """`resume=true`: the run folder's last checkpoint. Otherwise a fresh start (older checkpoints removed)."""
    last = run_dir / "checkpoints" / LAST
    if resume:
        if last.exists():
            log.info("resuming from %s", last)
            return last
        log.warning("resume=true but %s does not exist: starting from scratch", last)
        return None
    if last.exists():
        log.info("starting over in %s (resume=true would continue from its last checkpoint)", run_dir)
        last.unlink()
    return None


def train(job: Job) -> dict[str, Any]:
    cfg = job.cfg
    run_dir = Path(cfg.paths.runs) / run_id(job.config)
    resume_from = checkpoint_to_resume(run_dir, cfg.resume)

    model = build(cfg.model)
    module = ClassificationModule(
        model,
        num_classes=cfg.dataset.num_classes,
        optimizer=build(cfg.optimizer.optimizer),
        scheduler=build(cfg.optimizer.scheduler) if cfg.optimizer.get("scheduler") else None,
    )
    # The latest epoch, always under the same name (what resume=true looks for). Lightning writes `save_last`
    # copies only when a top-k checkpoint is saved, so top-1-by-recency under a fixed filename does the job.
    checkpointing = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename=LAST.removesuffix(".ckpt"),
        monitor=None,
        save_top_k=1,
        enable_version_counter=False,
    )
    extra = [build(c) for c in cfg.get("callbacks", {}).values()]
    trainer = build(
        cfg.trainer,
        logger=job.logger,
        callbacks=[checkpointing, EpochReseed(cfg.seed), *extra],
        default_root_dir=str(run_dir),
    )
    trainer.fit(module, datamodule=job.datamodule, ckpt_path=resume_from, weights_only=True)

    # Evaluate what was saved, not what is in memory: a fresh model loaded from the checkpoint file.
    checkpoint = run_dir / "checkpoints" / LAST
    deployed = load_weights(build(cfg.model), checkpoint)
    measurement = measure_classifier(deployed, job.datamodule, job.device, job.protocol, cfg.dataset.num_classes)
    record = build_record(job.config, job.device, measurement, checkpoint)
    return job.publish(record, "train")


def run(cfg: DictConfig) -> dict[str, Any]:
    job = None
    try:
        job = start_job(cfg)
        return train(job)
    finally:
        finish_job(job)
