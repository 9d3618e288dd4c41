"""The paper-style table: one row per (dataset, device, model, compressor and its settings, runtime and precision),
each measure over the seeds (n, mean ± sample std and the Student's t 95 % interval of the mean), and the changes of
a compressed row to its own baselines.

One latency statistic and one runtime per comparison: a record's latency is its median ms per image (the statistic
compress.py's own comparison uses, edgecomp.report.comparison); records measured by different runtimes or
precisions never share a row; and the baseline each compressed record was compared with (its `baseline`: the
deployed FP32 network on the same runtime) is a row of its own, so the table shows both sides of every ratio.

The changes are paired by seed: each compressed record is compared with the baseline measured in its own run (same
seed), and the per-seed changes are what the interval is over, so that the spread the seeds share drops out. The
accuracy change is the mean per-seed difference in points with its t interval and a verdict (`better`, `worse`,
`same within noise`). The speed-up is baseline / compressed latency (> 1: the compressed model is faster): per seed
the record's paired ratio (baseline and compressed timed in alternating rounds, `vs_baseline.latency`; the ratio of
the medians for a record older than that), over the seeds their geometric mean with the t interval of the log
ratios, for one seed the record's own interval over its rounds; a verdict `faster`, `slower` or `same within noise`.
A row of one seed has no interval over seeds and says so (edgecomp.report.intervals). Size ratios are compressed /
baseline.

The accuracy is the first of the task's reported metrics (edgecomp.evaluate.evaluator.REPORTED_METRICS: top-1; a
detector's COCO mAP50-95, then its mAP on small objects, `map_small`); each of them is shown the same way, mean ± std
with its interval and the paired change with its verdict. A seed without a value for a metric (map_small where the
data has no small objects) is left out of that metric's numbers, whose n counts the seeds used.

Pure functions on lists of record dicts (edgecomp.evaluate.record; edgecomp.report.records reads them from a
results folder, edgecomp.report.table_format writes the rows as CSV and Markdown).
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from edgecomp.evaluate.evaluator import REPORTED_METRICS  # a row's metrics by the record's task, its accuracy first
from edgecomp.evaluate.uncertainty import MeanInterval, PairedDifference, mean_interval, paired_difference
from edgecomp.report.comparison import median_latency, runtime_label
from edgecomp.report.intervals import (
    Speedup,
    interval,
    seed_latency_ratio,
    speedup_over_seeds,
)
from edgecomp.units import ratio

# The keys of a record's `compression` that are settings and so tell rows apart (pruning at 0.25 and at 0.5 are two
# rows; distillation from two teachers too). The rest of `compression` is measured (time_s, rss_added_peak_bytes,
# sparsity_reached, kd's loss) and stays out of the label.
LABEL_SETTINGS = ("sparsity", "T", "alpha", "teacher")
# Config keys of the compressor that are its identity, not a setting.
_COMPRESSOR_IDENTITY = ("_target_", "name")


# --------------------------------------------------------------------------------------------------- aggregating


@dataclass(frozen=True)
class RowKey:
    """What tells rows apart. `settings` are (key, value) pairs: the compressor's label settings, plus any other
    compressor setting that differs between records that would otherwise share the row."""

    task: str
    dataset: str
    device: str | None
    model: str | None
    compressor: str | None
    settings: tuple[tuple[str, Any], ...] = ()
    runtime: str | None = None  # what ran the measured artifact: "onnxruntime int8", "torch fp32"

    @property
    def settings_label(self) -> str:
        return " ".join(f"{key}={_format_setting(value)}" for key, value in self.settings)

    @property
    def label(self) -> str:
        """The row's compressor column: `prune_unstructured sparsity=0.25`."""
        return " ".join(part for part in (self.compressor or "-", self.settings_label) if part)


@dataclass(frozen=True)
class MetricSummary:
    """One of a row's reported metrics over its seeds, in percent: `pct` its n, mean, sample std and t interval (None
    when no seed has a value: map_small on data without small objects); `change` the paired per-seed change in points
    to each record's own baseline, over the seeds where both sides have a value (None for a baseline row); and for a
    metric that one seed alone gives, `images_ci95`, the bootstrap interval its run measured over the evaluation
    images (`metrics_ci95`), where recorded."""

    metric: str
    pct: MeanInterval | None
    change: PairedDifference | None = None
    images_ci95: tuple[float, float] | None = None

    @property
    def ci95(self) -> tuple[float, float] | None:
        """The interval: the t interval over seeds, or for one seed the bootstrap over its images."""
        if self.pct is None:
            return None
        return self.pct.ci95 or self.images_ci95

    @property
    def delta_pts(self) -> float | None:
        """The mean per-seed change in points."""
        return None if self.change is None else self.change.mean


@dataclass(frozen=True)
class Row:
    """One line of the table. Each measure over the row's seeds is a MeanInterval (n, mean, sample std, t interval;
    None when no seed has it, e.g. no latency for a scored predictions file). `metrics` are the task's reported metrics
    (REPORTED_METRICS), in percent: the first is the row's accuracy (top-1, or COCO mAP50-95 for detection: what the
    Pareto plot and the `accuracy_*` names are), the rest what the task is judged on besides (a detector's
    map_small). The changes compare a compressed row with the baselines recorded alongside it, seed by seed, and are
    None for a baseline row."""

    key: RowKey
    seeds: tuple[Any, ...]
    metrics: tuple[MetricSummary, ...]
    latency_ms: MeanInterval | None
    size_bytes: MeanInterval | None
    gzip_bytes: MeanInterval | None
    compression_time_s: MeanInterval | None
    # No record of the row compares with a baseline (train.py, evaluate.py, compressor=none): no changes.
    is_baseline: bool
    speedup_interval: Speedup | None = None  # baseline / compressed latency: > 1 is faster
    size_ratio: float | None = None
    gzip_ratio: float | None = None
    # A row of one seed has no interval over seeds; this is the interval its one run measured itself.
    latency_passes_ci95: tuple[float, float] | None = None  # ms: the interval of the median of the timed passes

    @property
    def accuracy(self) -> MetricSummary:
        """The row's headline metric (the first reported one)."""
        return self.metrics[0]

    def metric_summary(self, metric: str) -> MetricSummary | None:
        """The reported metric `metric`, None where the row's task does not report it."""
        return next((summary for summary in self.metrics if summary.metric == metric), None)

    @property
    def metric(self) -> str:
        return self.accuracy.metric

    @property
    def accuracy_pct(self) -> MeanInterval | None:
        return self.accuracy.pct

    @property
    def accuracy_change(self) -> PairedDifference | None:
        """Points, compressed - own baseline per seed."""
        return self.accuracy.change

    @property
    def accuracy_images_ci95(self) -> tuple[float, float] | None:
        """Percent: one seed's bootstrap interval over its evaluation images."""
        return self.accuracy.images_ci95

    @property
    def delta_accuracy_pts(self) -> float | None:
        """The mean per-seed accuracy change in points."""
        return self.accuracy.delta_pts

    @property
    def speedup(self) -> float | None:
        """Baseline / compressed latency over the seeds (their paired ratios' geometric mean, inverted)."""
        return None if self.speedup_interval is None else self.speedup_interval.value

    @property
    def accuracy_ci95(self) -> tuple[float, float] | None:
        """The accuracy's interval: the t interval over seeds, or for one seed the bootstrap over its images."""
        return self.accuracy.ci95

    @property
    def latency_ci95(self) -> tuple[float, float] | None:
        """The latency's interval: the t interval over seeds, or for one seed that of the median of its passes."""
        if self.latency_ms is None:
            return None
        return self.latency_ms.ci95 or self.latency_passes_ci95


def _format_setting(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _key_value(value: Any) -> Any:
    """A setting as part of a (hashable) row key: a list or mapping (e.g. ptq_int8's op_types) as compact JSON."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    return value


def _label_settings(record: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    compression = record.get("compression") or {}
    return tuple((key, _key_value(compression[key])) for key in LABEL_SETTINGS if key in compression)


def _compressor_config(record: dict[str, Any]) -> dict[str, Any]:
    """The config of the compressor that made the record: a recipe stage's own, or the run's `compressor`."""
    config = record.get("config") or {}
    if recipe := record.get("recipe"):
        return ((config.get("recipe") or {}).get("stages") or {}).get(recipe["stage"]) or {}
    return config.get("compressor") or {}


def _compressor_label(record: dict[str, Any]) -> str | None:
    """The row's compressor: its name, or for a recipe's stage the recipe and the stage's place in it (the third of
    three stages of prune_distill_int8 is `prune_distill_int8 3/3 ptq_int8`), since what it measures is the chain
    up to there."""
    recipe = record.get("recipe")
    if not recipe:
        return record["compressor"]
    return f"{recipe['name']} {recipe['index'] + 1}/{len(recipe['stages'])} {record['compressor']}"


def _other_settings(record: dict[str, Any]) -> dict[str, Any]:
    """The compressor's configured settings outside LABEL_SETTINGS: if two records of one row differ in one of these
    (a sweep over ptq_int8's calibrate_method), they measured different things and must not be averaged together."""
    compressor = dict(_compressor_config(record))
    if recipe := record.get("recipe"):
        # a recipe whose other stages were set otherwise measured another chain
        compressor["recipe_variant"] = recipe.get("variant")
    compressor["convergence"] = _convergence(record)
    return {
        key: value for key, value in compressor.items() if key not in _COMPRESSOR_IDENTITY and key not in LABEL_SETTINGS
    }


def _convergence(record: dict[str, Any]) -> Any:
    """The rule the record's baseline was trained until converged by (null: a fixed budget): a converged baseline is
    another baseline than a fixed-budget one, and so are the rows compressed from it."""
    return (record.get("config") or {}).get("convergence")


def _split_by_differing_settings(key: RowKey, records: list[dict[str, Any]]) -> dict[RowKey, list[dict[str, Any]]]:
    others = [_other_settings(record) for record in records]
    names = sorted({name for settings in others for name in settings})
    differing = [name for name in names if len({_key_value([s.get(name)]) for s in others}) > 1]
    if not differing:
        return {key: records}
    split: dict[RowKey, list[dict[str, Any]]] = defaultdict(list)
    for record, settings in zip(records, others, strict=True):
        extra = tuple((name, _key_value(settings.get(name))) for name in differing)
        split[replace(key, settings=key.settings + extra)].append(record)
    return split


def _one_record_per_seed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A seed evaluated twice (a re-run) counts once: the most recent record (by `created`, then file order) wins."""
    by_seed: dict[Any, dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: str(r.get("created") or "")):
        by_seed[record["seed"]] = record
    return [by_seed[seed] for seed in sorted(by_seed, key=sort_value)]


def _points(metrics: dict[str, Any] | None, metric: str) -> float | None:
    """A metric (a fraction) in percent, None where unknown: absent, null or NaN (COCO's "no ground truth")."""
    value = (metrics or {}).get(metric)
    if value is None:
        return None
    points = 100.0 * float(value)
    return points if math.isfinite(points) else None


def _metric_summary(metric: str, records: list[dict[str, Any]], compressed: list[dict[str, Any]]) -> MetricSummary:
    """`metric` over the seeds that have a value for it, and its paired change over the `compressed` records whose
    own baseline has one too."""
    measured = [record for record in records if _points(record["metrics"], metric) is not None]
    change = None
    if compressed:
        differences = []
        for record in compressed:
            after, before = _points(record["metrics"], metric), _points(record["baseline"].get("metrics"), metric)
            differences.append(None if after is None or before is None else after - before)
        change = paired_difference(differences)
    return MetricSummary(
        metric=metric,
        pct=mean_interval([_points(record["metrics"], metric) for record in measured]),
        change=change,
        # the one seed that gives the metric: the interval its run measured over the images
        images_ci95=_one_run_interval(measured, lambda r: (r.get("metrics_ci95") or {}).get(metric), 100.0),
    )


def _mean_pair(pairs: list[tuple[float | None, float | None]]) -> tuple[float, float] | None:
    """Means of (compressed, baseline) over the seeds where both are known."""
    known = [(a, b) for a, b in pairs if a is not None and b is not None]
    if not known:
        return None
    return statistics.fmean(a for a, _ in known), statistics.fmean(b for _, b in known)


def _one_run_interval(
    records: list[dict[str, Any]], value: Callable[[dict[str, Any]], Any], scale: float = 1.0
) -> tuple[float, float] | None:
    """A row of one record: the interval that record measured itself (`value(record)`, times `scale`), None for
    several seeds (whose interval is the one over them) or none."""
    return interval(value(records[0]), scale) if len(records) == 1 else None


def _ratio_of_means(pairs: list[tuple[float | None, float | None]]) -> float | None:
    means = _mean_pair(pairs)
    return None if means is None else ratio(*means)


def baseline_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The baseline each compressed record was measured against, as a record of its own (compressor none, the
    baseline's runtime, metrics, latency and sizes, the compressed record's seed and time): the deployed FP32
    network of a PTQ record, the from-scratch student of a distillation, the trained model of a pruning."""
    made = []
    for record in records:
        baseline = record.get("baseline")
        if not isinstance(baseline, dict) or record.get("compressor") == "none":
            continue
        made.append(
            {
                **{
                    key: record.get(key)
                    for key in ("task", "dataset", "device", "model", "seed", "created", "hardware")
                },
                **{
                    key: baseline.get(key)
                    for key in ("metrics", "metrics_ci95", "latency_ms", "size_bytes", "gzip_bytes", "runtime")
                },
                "compressor": "none",
                "artifact": baseline.get("artifact"),
                "config": {"compressor": {"name": "none"}, "convergence": _convergence(record)},
            }
        )
    return made


def aggregate(key: RowKey, records: list[dict[str, Any]]) -> Row:
    """One row from the records of one key: each measure over the seeds, and the changes to the baselines that the
    compressed records carry, paired by seed (the size ratios, which seeds barely move: compressed mean / baseline
    mean over the same seeds)."""
    records = _one_record_per_seed(records)
    # compressor=none deploys the baseline itself: its compress.py record (baseline = itself) is a baseline row
    compressed = [r for r in records if isinstance(r.get("baseline"), dict) and r.get("compressor") != "none"]
    changes: dict[str, Any] = {}
    if compressed:
        changes = {
            "speedup_interval": speedup_over_seeds([seed_latency_ratio(r, r["baseline"]) for r in compressed]),
            "size_ratio": _ratio_of_means([(r.get("size_bytes"), r["baseline"].get("size_bytes")) for r in compressed]),
            "gzip_ratio": _ratio_of_means([(r.get("gzip_bytes"), r["baseline"].get("gzip_bytes")) for r in compressed]),
        }
    return Row(
        key=key,
        seeds=tuple(r["seed"] for r in records),
        metrics=tuple(_metric_summary(metric, records, compressed) for metric in REPORTED_METRICS[key.task]),
        latency_ms=mean_interval([median_latency(r) for r in records]),
        size_bytes=mean_interval([r.get("size_bytes") for r in records]),
        gzip_bytes=mean_interval([r.get("gzip_bytes") for r in records]),
        compression_time_s=mean_interval([(r.get("compression") or {}).get("time_s") for r in records]),
        is_baseline=not compressed,
        latency_passes_ci95=_one_run_interval(records, lambda r: (r.get("latency_ms") or {}).get("ci95")),
        **changes,
    )


def sort_value(value: Any) -> tuple[int, Any]:
    """Numbers in numeric order, then anything else in text order, None last."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (2, "") if value is None else (1, str(value))


def _row_order(key: RowKey) -> tuple:
    return (
        key.task,
        key.dataset,
        str(key.device or ""),
        str(key.model or ""),
        key.compressor != "none",  # the baselines first in each model's block
        str(key.compressor or ""),
        str(key.runtime or ""),
        tuple((name, sort_value(value)) for name, value in key.settings),
    )


def _row_key(record: dict[str, Any]) -> RowKey:
    return RowKey(
        task=record["task"],
        dataset=record["dataset"],
        device=record["device"],
        model=record["model"],
        compressor=_compressor_label(record),
        settings=_label_settings(record),
        runtime=runtime_label(record),
    )


def records_by_row(records: Sequence[dict[str, Any]]) -> dict[RowKey, list[dict[str, Any]]]:
    """The records grouped into the table's rows, in the table's order: each row's key and the records it counts,
    one per seed (a seed recorded twice: the latest), in seed order. A compressed record's baseline is a row of its
    own where no record measured it (baseline_records)."""
    groups: dict[RowKey, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[_row_key(record)].append(record)
    # A compressed record's baseline becomes a row where no record measured it (e.g. the FP32 ONNX file a quantizer
    # compared with, on a sweep whose own baselines ran in eager PyTorch): both sides of every ratio are rows.
    measured = set(groups)
    for record in baseline_records(records):
        if (key := _row_key(record)) not in measured:
            groups[key].append(record)
    rows = {
        row_key: _one_record_per_seed(row_records)
        for key, group in groups.items()
        for row_key, row_records in _split_by_differing_settings(key, group).items()
    }
    return {key: rows[key] for key in sorted(rows, key=_row_order)}


def build_rows(records: Sequence[dict[str, Any]]) -> list[Row]:
    """Group the records into rows (seeds of one configuration together) and aggregate each, in table order."""
    return [aggregate(key, row_records) for key, row_records in records_by_row(records).items()]
