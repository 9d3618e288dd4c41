"""train.py: train a model, save its checkpoint, evaluate that checkpoint on the target device, record it."""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch.nn as nn
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, open_dict

from edgecomp.config import build, run_id
from edgecomp.evaluate.size import save_weights
from edgecomp.lit.callbacks import EpochReseed
from edgecomp.models.checkpoint import load_weights
from edgecomp.pipelines.common import Job, run_job
from edgecomp.pipelines.measure import build_record

log = logging.getLogger("edgecomp")
LAST = "last.ckpt"
WEIGHTS = "model.pt"  # the deployable weights, written when training has finished


def with_model(job: Job, key: str) -> Job:
    """The same job with its `model` replaced by the config's `key` group (e.g. `teacher`): same dataset, trainer,
    optimizer and seed. Its run folder is the one `train.py model=<that model>` trains into, so either reuses
    the other's run."""
    cfg = copy.deepcopy(job.cfg)
    with open_dict(cfg):
        cfg.model = cfg[key]
    return dataclasses.replace(job, cfg=cfg, config={**job.config, "model": job.config[key]})


def initial_model(job: Job) -> nn.Module:
    """The model a training run starts from: a fresh `job.new_model()` drawn right after seeding with the run seed.

    Its initial weights then depend on the seed alone, not on what the process did before (a baseline trained
    earlier in the same compress.py run, before a teacher): a run folder holds the same weights whichever entry
    point trained it, and a distillation student starts exactly where its from-scratch baseline started.
    """
    pl.seed_everything(job.cfg.seed, workers=True, verbose=False)
    return job.new_model()


def run_dir(job: Job) -> Path:
    """The folder of the training run this config describes (the same for train.py and compress.py)."""
    return Path(job.cfg.paths.runs) / run_id(job.config)


def last_checkpoint(folder: Path) -> Path:
    """Where a run folder's checkpoint of the latest epoch lives (written after every epoch)."""
    return folder / "checkpoints" / LAST


def checkpoint_to_resume(folder: Path, resume: bool) -> Path | None:
    """`resume=true`: the run folder's last checkpoint. Otherwise a fresh start (an older one is removed)."""
    last = last_checkpoint(folder)
    if resume:
        if last.exists():
            log.info("resuming from %s", last)
            return last
        log.warning("resume=true but %s does not exist: starting from scratch", last)
        return None
    if last.exists():
        log.info("starting over in %s (resume=true would continue from its last checkpoint)", folder)
        last.unlink()
    (folder / WEIGHTS).unlink(missing_ok=True)
    return None


def fit(job: Job) -> Path:
    """Train the configured model; returns its final checkpoint (and writes `model.pt` into the run folder)."""
    cfg = job.cfg
    folder = run_dir(job)
    resume_from = checkpoint_to_resume(folder, cfg.resume)

    module = build(cfg.dataset.module)(
        initial_model(job),
        optimizer=build(cfg.optimizer.optimizer),
        scheduler=build(cfg.optimizer.scheduler) if cfg.optimizer.get("scheduler") else None,
    )
    # The latest epoch, always under the same name (what resume=true looks for). Lightning writes `save_last`
    # copies only when a top-k checkpoint is saved, so top-1-by-recency under a fixed filename does the job.
    checkpointing = ModelCheckpoint(
        dirpath=last_checkpoint(folder).parent,
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
        default_root_dir=str(folder),
    )
    trainer.fit(module, datamodule=job.datamodule, ckpt_path=resume_from, weights_only=True)
    save_weights(module.model, folder / WEIGHTS)
    return last_checkpoint(folder)


def trained_checkpoint(job: Job, model_key: str = "model") -> Path:
    """The checkpoint of a finished training run with this config, training it first if there is none.

    `model_key` names the config group that is trained: `model` (the baseline), or another model of the same job
    such as `teacher` (distillation), trained with the job's dataset, trainer, optimizer and seed.
    """
    role = "baseline" if model_key == "model" else model_key
    if model_key != "model":
        job = with_model(job, model_key)
    folder = run_dir(job)
    if (folder / WEIGHTS).exists() and last_checkpoint(folder).exists():
        log.info("reusing the %s trained with this config: %s", role, folder)
        return last_checkpoint(folder)
    log.info("no finished %s for this config in %s: training it", role, folder)
    return fit(job)


def train(job: Job) -> dict[str, Any]:
    checkpoint = fit(job)
    # Evaluate what was saved, not what is in memory: a fresh model loaded from the checkpoint file.
    deployed = load_weights(job.new_model(), checkpoint)
    return job.publish(build_record(job.config, job.device, job.measure(deployed), checkpoint), "train")


def run(cfg: DictConfig) -> dict[str, Any]:
    return run_job(cfg, train)
