"""Logger helpers. The `logger` config group instantiates a Lightning logger (or `False` for none)."""

from __future__ import annotations

from typing import Any, Literal

from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger

from edgecomp.evaluate.record import flatten


def disabled() -> bool:
    """`logger=none`: Lightning takes `logger=False` as "no logger" (None would give it its default logger)."""
    return False


def _hydra_job() -> tuple[str | None, str | None]:
    """(sweep folder name if this is a multirun job, job name), or Nones outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):
        return None, None
    from pathlib import Path

    sweep = Path(hydra_cfg.sweep.dir).name if hydra_cfg.mode == RunMode.MULTIRUN else None
    return sweep, hydra_cfg.job.name


class WandbLogger(_LightningWandbLogger):
    """Lightning's WandbLogger, one W&B run per job, grouped by the multirun sweep it belongs to.

    Offline unless told otherwise, so it works with no network; `close()` ends the run (wandb.finish()),
    which a multirun needs so the next job starts a run of its own instead of logging into this one.
    """

    def __init__(
        self, *, group: str | None = None, job_type: str | None = None, offline: bool = True, **kwargs
    ) -> None:
        sweep, job = _hydra_job()
        super().__init__(offline=offline, group=group or sweep, job_type=job_type or job, **kwargs)

    def log_record(self, record: dict[str, Any]) -> None:
        self.experiment.summary.update(flatten(record))

    def close(self) -> None:
        if self._experiment is not None:
            import wandb

            wandb.finish()
            self._experiment = None


def log_record(logger: Logger | Literal[False] | None, record: dict[str, Any]) -> None:
    """Send a record to the logger: the config as hyper-parameters, its numbers as metrics, all of it as the
    run summary where the logger has one."""
    if not logger:
        return
    logger.log_hyperparams(record["config"])
    flat = flatten(record)
    numbers = {k: float(v) for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    logger.log_metrics({f"record/{k}": v for k, v in numbers.items()})
    if hasattr(logger, "log_record"):
        logger.log_record(record)
    logger.save()


def close_logger(logger: Logger | Literal[False] | None) -> None:
    if logger and hasattr(logger, "close"):
        logger.close()
