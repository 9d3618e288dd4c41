"""The interface of a task's quality metric: what `metrics` in a record holds.

An evaluator scores a model on its datamodule's evaluation split. It gets both the model and the Predictor the
target device's runtime made of it: a classifier is scored through the Predictor (so an ONNX Runtime or FP16
deployment is what is scored), a detector through its own decoding (`DetectorAdapter.predict`: box decoding and
NMS are not part of the deployable network the runtime runs).

`evaluate` is what a record's measurement calls: the metrics and, with `bootstrap` resamples (config
`evaluate.bootstrap`), their 95 % percentile bootstrap intervals over the evaluation images (`metrics_ci95`).
`__call__` gives the metrics alone: what a search scores its candidates with.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch.nn as nn

from edgecomp.errors import ConfigError
from edgecomp.evaluate.runtimes.runtime import Predictor
from edgecomp.evaluate.uncertainty import bootstrap_interval

# The metrics a report shows for each task, with their intervals and paired changes (the table's rows, a recipe's
# waterfall): the headline accuracy first, then what a detector is judged on besides (small objects: ScaleKD's claim).
REPORTED_METRICS = {"classification": ("top1",), "detection": ("map", "map_small")}
# Each task's headline accuracy metric: what a report's accuracy column and a search's default score are.
ACCURACY_METRIC = {task: metrics[0] for task, metrics in REPORTED_METRICS.items()}
# How the summaries, tables and plots name a metric (a metric without a label is shown by its key).
METRIC_LABELS = {
    "top1": "Top-1",
    "map": "mAP@50-95",
    "map50": "mAP@50",
    "map75": "mAP@75",
    "map_small": "mAP small",
    "map_medium": "mAP medium",
    "map_large": "mAP large",
    "recall": "Recall",
}


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


class Evaluator(ABC):
    # The keys of the metrics it reports, known before anything runs (a setting that names a metric is checked
    # against them before any work).
    metric_names: tuple[str, ...] = ()
    # Resamples of the evaluation images behind `evaluate`'s intervals (config evaluate.bootstrap; 0: none).
    bootstrap: int = 0

    @abstractmethod
    def __call__(self, model: nn.Module | None, predictor: Predictor, datamodule, device) -> dict[str, float]:
        """The metrics of `model` (deployed as `predictor` on `device`) on `datamodule`'s evaluation split. `model` is
        None for a file made elsewhere (no network: what `predictor` runs is scored)."""

    def evaluate(self, model: nn.Module | None, predictor: Predictor, datamodule, device) -> Evaluation:
        """The metrics with their bootstrap intervals over the evaluation images where the evaluator computes them
        and `bootstrap` > 0; this default gives the metrics of `__call__` and no interval."""
        return Evaluation(self(model, predictor, datamodule, device))


class Evaluation(NamedTuple):
    """What `Evaluator.evaluate` measured: `metrics` (a record's `metrics`) and `ci95` (its `metrics_ci95`:
    {"resamples": N, metric: [low, high] or None where the metric has no value in most resamples}, or None when no
    bootstrap ran). A pair: `metrics, ci95 = evaluator.evaluate(...)`."""

    metrics: dict[str, float]
    ci95: dict[str, Any] | None = None


def check_resamples(bootstrap: int) -> int:
    """`evaluate.bootstrap` as a count of resamples (0: no interval)."""
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise ConfigError(f"evaluate.bootstrap={bootstrap!r}: expected a whole number of resamples >= 0 (0: none)")
    return bootstrap


def bootstrap_ci95(
    statistics: Mapping[str, Callable[[np.ndarray], float]], items: int, resamples: int
) -> dict[str, Any] | None:
    """`metrics_ci95` of metrics computed by `statistics` (each a function of the resampled item indices) over
    `items` evaluation images: each metric's 95 % bias-corrected percentile bootstrap interval
    (edgecomp.evaluate.uncertainty)
    over the same `resamples` resamples (seed 0, so a rerun gives the same interval); None when `resamples` is 0."""
    if resamples == 0:
        return None
    intervals: dict[str, Any] = {"resamples": resamples}
    for name, statistic in statistics.items():
        # bias-corrected around the full set's value (the identity resample): resampled COCO AP runs high
        estimate = statistic(np.arange(items)) if items else None
        interval = bootstrap_interval(statistic, items, resamples, estimate=estimate) if items else None
        intervals[name] = None if interval is None else [interval[0], interval[1]]
    return intervals
