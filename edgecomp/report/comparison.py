"""Baseline against compressed model for one compress.py record: the ratios the record keeps under `vs_baseline`,
and the proof-of-concept report's table (params, FLOPs, latency and the task's metrics; baseline, compressed,
change), which compress.py prints and writes next to the artifact.

The report's point is the gap between the FLOPs ratio and the latency ratio (-34 % FLOPs gave -19.6 % latency on
its GPU): both stand side by side here. Latency is the median ms per image of the latency protocol's passes (the
median, not the mean: one slow pass on a shared CPU should not decide a ratio); the latency ratio is that of the two
sides timed in paired alternating rounds, with its 95 % interval and verdict (`vs_baseline.latency`), where the
record has it. Pure functions on record dicts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from edgecomp.evaluate.evaluator import metric_label
from edgecomp.evaluate.record import VsBaseline
from edgecomp.evaluate.uncertainty import RatioInterval
from edgecomp.units import ratio, si_text

LATENCY_STAT = "median"
# The metrics the table shows, by task, with the report's names for them: COCO mAP50-95 and recall for a detector.
TABLE_METRICS = {"classification": ("top1",), "detection": ("map", "recall")}


def median_latency(measured: dict[str, Any]) -> float | None:
    """A record's (or its baseline's) latency statistic, the one every comparison uses."""
    return (measured.get("latency_ms") or {}).get(LATENCY_STAT)


def vs_baseline(record: dict[str, Any], latency: RatioInterval | None = None) -> VsBaseline:
    """Compressed / baseline for params, FLOPs and latency, None where a side is unknown. With `latency` (the two
    sides timed in paired rounds: edgecomp.evaluate.paired_latency) the latency ratio is its ratio and `latency`
    holds it with its interval, rounds and verdict; without, the ratio of the two medians, and no interval."""
    baseline = record["baseline"]
    return VsBaseline(
        params_ratio=ratio(record.get("params"), baseline.get("params")),
        flops_ratio=ratio(record.get("flops"), baseline.get("flops")),
        latency_ratio=(
            latency.ratio if latency is not None else ratio(median_latency(record), median_latency(baseline))
        ),
        latency_stat="paired rounds" if latency is not None else LATENCY_STAT,
        latency=None if latency is None else latency.as_record(),
    )


def runtime_label(measured: dict[str, Any]) -> str | None:
    """What ran the measured artifact, e.g. "onnxruntime int8" (None for a record without a runtime: a scored
    predictions file)."""
    runtime = measured.get("runtime") or {}
    return " ".join(str(runtime[key]) for key in ("runtime", "precision") if runtime.get(key)) or None


def runtime_text(measured: dict[str, Any]) -> str:
    """What ran the side's artifact, "-" if nothing did: a latency means nothing without it."""
    return runtime_label(measured) or "-"


def _count(value: float | None, unit: str) -> str:
    return "-" if value is None else si_text(value, unit, separator="")


def _change(ratio: float | None) -> str:
    return "-" if ratio is None else f"{100 * (ratio - 1):+.1f}%"


def _latency_change(ratios: Mapping[str, Any]) -> str:
    """The latency's change, with the paired timing's 95 % interval and verdict where there is one."""
    paired = ratios.get("latency")
    if not paired:
        return _change(ratios.get("latency_ratio"))
    low, high = paired["ci95"]
    return f"{_change(paired['ratio'])} [{_change(low)}, {_change(high)}] {paired['verdict']}"


def _score(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _points(compressed: Any, baseline: Any) -> str:
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (compressed, baseline)):
        return "-"
    return f"{100 * (compressed - baseline):+.1f} pts"


def comparison_table(record: dict[str, Any]) -> str:
    """The report's table as Markdown (also readable as plain text): one row per measure, columns baseline,
    compressed and the change (relative for counts and time, in percentage points for metrics)."""
    baseline = record["baseline"]
    ratios = record.get("vs_baseline") or vs_baseline(record)
    rows = [
        ("Parameters", _count(baseline.get("params"), ""), _count(record.get("params"), ""), ratios["params_ratio"]),
        ("FLOPs", _count(baseline.get("flops"), ""), _count(record.get("flops"), ""), ratios["flops_ratio"]),
    ]
    lines = [(name, before, after, _change(ratio)) for name, before, after, ratio in rows]
    latency_before, latency_after = median_latency(baseline), median_latency(record)
    lines.append(
        (
            f"Latency (ms, {LATENCY_STAT})",
            "-" if latency_before is None else f"{latency_before:.2f}",
            "-" if latency_after is None else f"{latency_after:.2f}",
            _latency_change(ratios),
        )
    )
    lines.append(("Runtime", runtime_text(baseline), runtime_text(record), ""))
    for key in TABLE_METRICS.get(record["task"], ()):
        label = metric_label(key)
        before, after = (baseline.get("metrics") or {}).get(key), (record.get("metrics") or {}).get(key)
        lines.append((label, _score(before), _score(after), _points(after, before)))

    header = ("Metric", "Baseline", record.get("compressor") or "Compressed", "Change")
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]

    def row(cells: tuple[str, ...]) -> str:
        # The measure's name left-aligned, the numbers right-aligned.
        padded = [
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    title = f"{record['model']} on {record['dataset']}, device={record['device']}: baseline vs {record['compressor']}"
    return "\n".join([title, "", row(header), rule, *(row(line) for line in lines)]) + "\n"
