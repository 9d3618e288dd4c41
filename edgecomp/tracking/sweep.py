"""Sweeps and searches over runs: which sweep a record belongs to, what a search optimises, and its best trial.

- `current_sweep()`: the Hydra multirun job this process runs (the sweep's folder, the job number, its overrides),
  written into each of its records as `sweep`, so that a sweep's records can be told apart in a shared
  records.jsonl (a launcher's jobs run in parallel processes and append to it).
- `Objective`: a search's objective read from a record (`objective` in the config, set by the hparams_search presets):
  one record field to maximise or minimise, with a latency budget either as a penalty or as a second objective. The
  entry points return it, which is what Hydra's Optuna sweeper optimises.
- `BestTrial`: a Hydra callback (hydra.callbacks) that, when a sweep ends, reads the sweep's records back and reports
  the best trial from them: its overrides, objective and record.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from edgecomp.errors import ConfigError
from edgecomp.evaluate.record import read_records

BEST_TRIAL = "best_trial.json"  # in the sweep's folder


def current_sweep() -> dict[str, Any] | None:
    """{dir, job, overrides} of the Hydra multirun job this process runs; None outside a multirun."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):
        return None
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return {
        "dir": str(Path(hydra_cfg.sweep.dir).resolve()),
        "job": int(hydra_cfg.job.num),
        "overrides": list(hydra_cfg.overrides.task),
    }


def field_value(record: dict[str, Any], path: str) -> Any:
    """The value at a dotted path of a record (`metrics.top1`, `latency_ms.median`), or None if it has none."""
    value: Any = record
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


@dataclass(frozen=True)
class Objective:
    """What a search optimises, from a record: `metric` (a dotted record path, e.g. metrics.top1 or metrics.map) in
    `direction`. With `latency_budget_ms` (on `latency_ms.median`), either the metric is penalised by
    `latency_penalty` per unit of relative excess (a trial at 1.2x the budget with penalty 1 loses 0.2), or, with
    `latency_as_objective`, the latency is returned as a second objective to minimise (a multi-objective study:
    hydra.sweeper.direction=[maximize, minimize])."""

    metric: str
    direction: str = "maximize"
    latency_budget_ms: float | None = None
    latency_penalty: float = 1.0
    latency_as_objective: bool = False

    def __post_init__(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise ConfigError(f"objective.direction={self.direction}: expected maximize or minimize")
        if self.latency_budget_ms is not None and not self.latency_budget_ms > 0:
            raise ConfigError(f"objective.latency_budget_ms={self.latency_budget_ms}: expected a number of ms > 0")
        if self.latency_penalty < 0:
            raise ConfigError(f"objective.latency_penalty={self.latency_penalty}: expected a number >= 0")

    def value(self, record: dict[str, Any]) -> float | tuple[float, float]:
        """The record's objective: `single_value`, or with `latency_as_objective` the metric and the latency."""
        if self.latency_as_objective:
            return self.metric_value(record), float(field_value(record, "latency_ms.median"))
        return self.single_value(record)

    def single_value(self, record: dict[str, Any]) -> float:
        """The objective of a single-objective search: the metric, penalised past the latency budget."""
        metric = self.metric_value(record)
        latency = field_value(record, "latency_ms.median")
        if self.latency_budget_ms is None or latency is None:
            return metric
        excess = max(0.0, latency / self.latency_budget_ms - 1.0)
        sign = -1.0 if self.direction == "maximize" else 1.0
        return metric + sign * self.latency_penalty * excess

    def metric_value(self, record: dict[str, Any]) -> float:
        metric = field_value(record, self.metric)
        if not isinstance(metric, (int, float)) or isinstance(metric, bool) or not math.isfinite(metric):
            raise ConfigError(
                f"objective.metric={self.metric}: the record has {metric!r} there, not a finite number (e.g. "
                f"metrics.top1, metrics.map; the record's metrics are {sorted(record.get('metrics') or {})})"
            )
        return float(metric)

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "maximize" else a < b


def objective_of(cfg: DictConfig, result: Any) -> float | tuple[float, float] | None:
    """The config's `objective` of what an entry point's pipeline returned (a record, or a recipe's records: the last
    stage's); None without an objective, or in a DDP rank other than 0 (which returns no record)."""
    node = cfg.get("objective")
    if not node or result is None:
        return None
    record = result[-1] if isinstance(result, list) else result
    return Objective(**node).value(record)


class BestTrial(Callback):
    """When a sweep ends, the best of its trials as its records say: printed, and written to `best_trial.json` in the
    sweep's folder ({objective, value, job, overrides, record}). A single objective only (a multi-objective study
    has a front, not a best trial: Optuna's own optimization_results.yaml lists it)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        node = config.get("objective")
        if not node or node.get("latency_as_objective"):
            return
        objective = Objective(**node)
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        records_path = Path(config.paths.results) / "records.jsonl"
        if not records_path.exists():
            print(f"best trial: no records at {records_path}", flush=True)
            return
        trials = [r for r in read_records(records_path) if (r.get("sweep") or {}).get("dir") == str(sweep_dir)]
        if not trials:
            print(f"best trial: no record of the sweep {sweep_dir} in {records_path}", flush=True)
            return
        # A recipe writes one record per stage: a trial is its last
        last = {}
        for record in trials:
            last[record["sweep"]["job"]] = record
        best_job, best_value = None, None
        for job, record in sorted(last.items()):
            value = objective.single_value(record)  # a single objective: a multi-objective study returned above
            if best_value is None or objective.better(value, best_value):
                best_job, best_value = job, value
        best = last[best_job]
        summary = {
            "objective": {key: node[key] for key in node},
            "value": best_value,
            "trials": len(last),
            "job": best_job,
            "overrides": best["sweep"]["overrides"],
            "record": best,
        }
        (sweep_dir / BEST_TRIAL).write_text(json.dumps(summary, indent=1))
        print(
            f"best trial of {len(last)} (from {records_path}): job {best_job}, {objective.metric}"
            f"{' with latency penalty' if objective.latency_budget_ms else ''} = {best_value:.4f}, "
            f"overrides: {' '.join(best['sweep']['overrides'])}\n(written to {sweep_dir / BEST_TRIAL})",
            flush=True,
        )
