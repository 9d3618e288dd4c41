"""How edgecomp trains: the one service train.py, compress.py and every compressor that trains (pruning's and
FastNAS's fine-tune, distillation, a teacher trained on demand) go through.

A `Training` is a run config's dataset, trainer, optimizer, seed and logger. It knows where the training run that
config describes lives (`run_dir`: `<paths.runs>/<dataset>-<model>-s<seed>-<hash>`, the same folder whichever entry
point trains it), trains it or reuses it (`trained_checkpoint`), and fine-tunes a LightningModule for a few epochs
with the run's trainer settings (`fine_tune`). `for_model("teacher")` is the same training of another model of the
config (a distillation teacher), so a teacher trained by compress.py is the run `train.py model=<teacher>` makes.

It lives below the pipelines and the compressors, which both use it; it imports neither.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import torch
import torch.nn as nn
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, open_dict

from edgecomp.config import build, resolved_config, run_id
from edgecomp.evaluate.size import save_weights
from edgecomp.lit import distributed
from edgecomp.lit.callbacks import EpochReseed
from edgecomp.lit.convergence import (
    BEST,
    TRAINING_SUMMARY,
    ConvergenceStop,
    read_summary,
    training_summary,
    write_summary,
)
from edgecomp.lit.optimization import OptimizerFactory, SchedulerFactory

if TYPE_CHECKING:  # annotations only: the task module is built from the dataset's config
    from edgecomp.lit.classification_module import ClassificationModule
    from edgecomp.lit.detection_module import DetectionModule

log = logging.getLogger("edgecomp")
LAST = "last.ckpt"
WEIGHTS = "model.pt"  # the deployable weights, written when training has finished


def last_checkpoint(folder: Path) -> Path:
    """Where a run folder's checkpoint of the latest epoch lives (written after every epoch)."""
    return folder / "checkpoints" / LAST


def best_checkpoint(folder: Path) -> Path:
    """Where a run trained until converged keeps its best epoch's checkpoint (the run's result)."""
    return folder / "checkpoints" / BEST


class Training:
    """`cfg` the run's config, `config` the same resolved to plain data (what run folders are named by), the
    datamodule the run trains on and the logger its curves go to."""

    def __init__(
        self, cfg: DictConfig, config: dict[str, Any], datamodule: pl.LightningDataModule | None, logger: Any
    ) -> None:
        self.cfg = cfg
        self.config = config
        self.datamodule = datamodule
        self.logger = logger

    # ------------------------------------------------------------------------------------------ what it trains

    @property
    def seed(self) -> int:
        return int(self.cfg.seed)

    @property
    def max_epochs(self) -> int:
        """The run's training budget (trainer.max_epochs)."""
        return int(self.cfg.trainer.max_epochs)

    @property
    def model_name(self) -> str:
        return str(self.cfg.model.name)

    def for_model(self, key: str, node: DictConfig | None = None) -> Training:
        """The same training (dataset, trainer, optimizer, seed) of the config's `key` group (e.g. `teacher`), or
        of `node` given for it (a teacher at another resolution). Its run folder is the one `train.py
        model=<that model>` trains into, so either reuses the other's run."""
        cfg = copy.deepcopy(self.cfg)
        with open_dict(cfg):
            if node is not None:
                cfg[key] = copy.deepcopy(node)
            cfg.model = cfg[key]
        model = resolved_config(cfg.model) if node is not None else self.config[key]
        config = {**self.config, key: model, "model": model}
        return Training(cfg, config, self.datamodule, self.logger)

    def at_image_size(self, image_size: int) -> Training:
        """The same training on the same stored images letterboxed to `image_size` (a teacher that sees the data at a
        higher resolution than the run's model): `dataset.datamodule.image_size` set to it, so its run folder is the
        one `train.py dataset.datamodule.image_size=<size> model.input_size=<size>` trains into. The model's own
        input size is the caller's to set (for_model's node)."""
        datamodule = getattr(self.datamodule, "at_image_size", None)
        if datamodule is None:
            raise TypeError(f"{type(self.datamodule).__name__} cannot letterbox its images to another size")
        cfg = copy.deepcopy(self.cfg)
        with open_dict(cfg):
            cfg.dataset.datamodule.image_size = int(image_size)
        config = copy.deepcopy(self.config)
        config["dataset"]["datamodule"]["image_size"] = int(image_size)
        return Training(cfg, config, datamodule(image_size), self.logger)

    def new_model(self) -> nn.Module:
        """A fresh instance of the configured model (random init, or its pretrained_file)."""
        return build(self.cfg.model)

    def initial_model(self) -> nn.Module:
        """The model a training run starts from: a fresh model drawn right after seeding with the run seed.

        Its initial weights then depend on the seed alone, not on what the process did before (a baseline trained
        earlier in the same compress.py run, before a teacher): a run folder holds the same weights whichever entry
        point trained it, and a distillation student starts exactly where its from-scratch baseline started.
        """
        pl.seed_everything(self.seed, workers=True, verbose=False)
        return self.new_model()

    @property
    def run_dir(self) -> Path:
        """The folder of the training run this config describes (the same for train.py and compress.py)."""
        return Path(self.cfg.paths.runs) / run_id(self.config)

    @property
    def until_converged(self) -> bool:
        """Whether the run trains until its validation metric plateaus (a `convergence` config), trainer.max_epochs
        being the cap; otherwise it trains trainer.max_epochs epochs."""
        return self.cfg.get("convergence") is not None

    def result_checkpoint(self, folder: Path | None = None) -> Path:
        """The checkpoint a finished run hands on: its best epoch's when trained until converged, else its last."""
        folder = folder or self.run_dir
        return best_checkpoint(folder) if self.until_converged else last_checkpoint(folder)

    def summary(self) -> dict[str, Any] | None:
        """The finished run's training summary (edgecomp.lit.convergence): epochs, cap, why it stopped, the best
        epoch; None for a run trained before runs wrote one."""
        return read_summary(self.run_dir)

    # ------------------------------------------------------------------------------------------ how it trains

    def optimizer(self, lr: float | None = None) -> OptimizerFactory:
        """The run's optimizer (a factory of the parameters), at `lr` if given."""
        overrides = {} if lr is None else {"lr": lr}
        return build(self.cfg.optimizer.optimizer, **overrides)

    def scheduler(self, epochs: int | None = None) -> SchedulerFactory | None:
        """The run's learning-rate schedule (None without one), spanning `epochs` if given (a fine-tune's length,
        not the baseline's trainer.max_epochs)."""
        if not self.cfg.optimizer.get("scheduler"):
            return None
        horizon = {"T_max": epochs} if epochs is not None and "T_max" in self.cfg.optimizer.scheduler else {}
        return build(self.cfg.optimizer.scheduler, **horizon)

    def module_setting(self, key: str, default: Any) -> Any:
        """A setting of the dataset's task module (a detector's `warmup_steps`, `max_grad_norm`), or `default`."""
        return self.cfg.dataset.module.get(key, default)

    @property
    def default_lr(self) -> float:
        return float(self.cfg.optimizer.optimizer.lr)

    def task_module(
        self, model: nn.Module, lr: float, scheduler: SchedulerFactory | None = None
    ) -> ClassificationModule | DetectionModule:
        """The dataset's task module (classification, detection: its loss, warm-up and clipping) training `model`
        with the run's optimizer at `lr`, constant unless a `scheduler` is given: a compressor's fine-tune."""
        return build(self.cfg.dataset.module)(model, optimizer=self.optimizer(lr), scheduler=scheduler)

    def fine_tune(
        self,
        module: pl.LightningModule,
        epochs: int,
        *callbacks: pl.Callback,
        datamodule: pl.LightningDataModule | None = None,
    ) -> pl.Trainer:
        """Fit `module` for `epochs` epochs on the run's training data (or `datamodule`, a variant of it: a
        distillation's two-resolution batches), validating on the evaluation split each epoch, with the run's trainer
        settings (precision, determinism, accelerator) and logger, so its loss curves land next to the baseline's. No
        checkpoints are written: what a compressor trains is its product, measured and recorded by compress.py. The
        data order follows (seed, epoch) as in every run, and the model's own randomness is re-seeded each epoch
        (EpochReseed)."""
        if epochs < 1:
            raise ValueError(f"a fine-tune needs epochs >= 1, got {epochs}")
        trainer = build(
            self.cfg.trainer,
            max_epochs=epochs,
            logger=self.logger,
            callbacks=[EpochReseed(self.seed), *callbacks],
            enable_checkpointing=False,
            default_root_dir=str(self.cfg.paths.results),
        )
        trainer.fit(module, datamodule=datamodule if datamodule is not None else self.datamodule)
        return trainer

    def fit(self) -> Path:
        """Train the configured model from its initial weights; returns its result checkpoint (the last epoch's, or
        the best epoch's when trained until converged) and writes its weights (`model.pt`) and training summary
        (`training.json`) into the run folder. `resume=true` continues from the run folder's last checkpoint."""
        folder = self.run_dir
        resume_from = self._checkpoint_to_resume(folder, bool(self.cfg.resume))
        module = build(self.cfg.dataset.module)(
            self.initial_model(), optimizer=self.optimizer(), scheduler=self.scheduler()
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
        extra = [build(c) for c in self.cfg.get("callbacks", {}).values()]
        stop: ConvergenceStop | None = build(self.cfg.convergence) if self.until_converged else None
        best = stop.best_checkpointing(best_checkpoint(folder).parent) if stop is not None else None
        trainer = build(
            self.cfg.trainer,
            logger=self.logger,
            callbacks=[checkpointing, *[c for c in (stop, best) if c is not None], EpochReseed(self.seed), *extra],
            default_root_dir=str(folder),
        )
        trainer.fit(module, datamodule=self.datamodule, ckpt_path=resume_from, weights_only=True)
        best_epoch = None
        if best is not None and best.best_model_path:  # the run's result is its best epoch, not its last
            kept = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
            module.load_state_dict(kept["state_dict"])
            best_epoch = int(kept["epoch"]) + 1
        if distributed.is_main():
            save_weights(module.model, folder / WEIGHTS)
            summary = training_summary(trainer, stop, best, best_epoch)
            write_summary(folder, summary)
            log.info("trained %s", summary)
        distributed.barrier()  # under DDP no rank goes on before the run folder is complete
        return self.result_checkpoint(folder)

    def trained_checkpoint(self, role: str = "baseline") -> Path:
        """The checkpoint of a finished training run with this config, training it first if there is none."""
        folder = self.run_dir
        if (folder / WEIGHTS).exists() and self.result_checkpoint(folder).exists():
            log.info("reusing the %s trained with this config: %s", role, folder)
            return self.result_checkpoint(folder)
        log.info("no finished %s for this config in %s: training it", role, folder)
        return self.fit()

    @staticmethod
    def _checkpoint_to_resume(folder: Path, resume: bool) -> Path | None:
        """`resume=true`: the run folder's last checkpoint. Otherwise a fresh start (an older one is removed)."""
        last = last_checkpoint(folder)
        if resume and last.exists():
            log.info("resuming from %s", last)
            return last
        if resume:
            log.warning("resume=true but %s does not exist: starting from scratch", last)
        elif last.exists():
            log.info("starting over in %s (resume=true would continue from its last checkpoint)", folder)
        # what an earlier run left is not this run's (missing_ok: another DDP rank may have removed it first)
        for stale in (last, folder / WEIGHTS, best_checkpoint(folder), folder / TRAINING_SUMMARY):
            stale.unlink(missing_ok=True)
        return None
