"""The report's numbers over seeds, as the table (edgecomp.report.table) and the recipes' waterfalls
(edgecomp.report.waterfall) both show them: a measure as mean ± std with the Student's t 95 % interval of its
mean, a change to a baseline as the paired difference per seed with its interval and verdict, and a latency ratio
as a speed-up with its interval and verdict. The statistics are edgecomp.evaluate.uncertainty's; this module picks
the per-seed values out of the records and writes the cells.

A row of one seed has no interval over seeds: its cells say `1 seed` instead, and show only an interval that one
run measured itself, marked as such (the bootstrap over its evaluation images, the paired timing rounds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgecomp.evaluate.uncertainty import (
    ONE_SEED,
    MeanInterval,
    PairedDifference,
    ratio_interval,
)
from edgecomp.report.comparison import median_latency
from edgecomp.units import ratio

ONE_SEED_NOTE = "1 seed"


# --------------------------------------------------------------------------------------------------- values


def finite(value: Any) -> float | None:
    """`value` as a float where it is a finite number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def interval(value: Any, scale: float = 1.0) -> tuple[float, float] | None:
    """A record's `[low, high]` (times `scale`), None where it is not two finite numbers."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    low, high = finite(value[0]), finite(value[1])
    return None if low is None or high is None else (low * scale, high * scale)


def paired_latency(record: dict[str, Any], key: str = "latency") -> dict[str, Any] | None:
    """The record's paired-rounds latency ratio, `vs_baseline[key]` ({ratio, ci95, rounds, verdict}: compressed /
    baseline ms, timed alternately in the same run), None where the record has none (a record older than it)."""
    paired = (record.get("vs_baseline") or {}).get(key)
    if not isinstance(paired, dict) or finite(paired.get("ratio")) is None or paired["ratio"] <= 0:
        return None
    return paired


def seed_latency_ratio(
    record: dict[str, Any], against: dict[str, Any] | None, key: str = "latency"
) -> tuple[float | None, dict[str, Any] | None]:
    """One seed's latency ratio (compressed / `against` ms, < 1 faster) and the paired rounds it came from: the
    paired ratio `vs_baseline[key]` where the record has it, else the ratio of the two sides' medians (no rounds)."""
    if (paired := paired_latency(record, key)) is not None:
        return float(paired["ratio"]), paired
    if against is None:
        return None, None
    value = finite(ratio(median_latency(record), median_latency(against)))
    return (value if value is not None and value > 0 else None), None


# --------------------------------------------------------------------------------------------------- speed-ups


@dataclass(frozen=True)
class Speedup:
    """Before / after latency (> 1: faster) of a row: the geometric mean over its seeds of each seed's paired
    ratio, with the t interval of the log ratios over the seeds (n >= 2); for one seed, that seed's ratio with the
    interval of its own paired timing rounds where it has them. `verdict` is `faster`, `slower` or
    `same within noise`, None where there is no interval."""

    value: float
    ci95: tuple[float, float] | None
    verdict: str | None
    n: int  # seeds
    rounds: int | None = None  # one seed: the paired rounds its interval is from


def speedup_over_seeds(per_seed: Sequence[tuple[float | None, dict[str, Any] | None]]) -> Speedup | None:
    """`per_seed`: (ratio after / before, the paired rounds or None) per seed, as `seed_latency_ratio` gives."""
    known = [(value, paired) for value, paired in per_seed if value is not None and value > 0]
    if not known:
        return None
    if len(known) > 1:
        stat = ratio_interval([value for value, _ in known])
        low, high = stat.ci95
        return Speedup(1 / stat.ratio, (1 / high, 1 / low), stat.verdict, len(known))
    ((value, paired),) = known
    ci95 = None if paired is None else interval(paired.get("ci95"))
    if paired is None or ci95 is None or min(ci95) <= 0:
        return Speedup(1 / value, None, None, 1)
    rounds = paired.get("rounds")
    return Speedup(1 / value, (1 / ci95[1], 1 / ci95[0]), paired.get("verdict"), 1, rounds)


# --------------------------------------------------------------------------------------------------- cells


def _number(value: float, digits: int, signed: bool = False, unit: str = "") -> str:
    return f"{value:{'+' if signed else ''}.{digits}f}{unit}"


def interval_text(ci95: tuple[float, float], digits: int = 2, signed: bool = False, unit: str = "") -> str:
    """`[low, high]`."""
    low, high = (_number(v, digits, signed, unit) for v in ci95)
    return f"[{low}, {high}]"


def mean_std_text(stat: MeanInterval | None, scale: float = 1.0, digits: int = 2) -> str:
    """`mean ± std` (the mean alone for one value), "" where unknown: for what seeds barely move (sizes, times)."""
    if stat is None or not math.isfinite(stat.mean):
        return ""
    text = _number(stat.mean / scale, digits)
    return text if stat.std is None else f"{text} ± {_number(stat.std / scale, digits)}"


def measure_text(
    stat: MeanInterval | None,
    digits: int = 2,
    one_run: tuple[float, float] | None = None,
    one_run_label: str = "",
    seed_note: bool = True,
) -> str:
    """`mean ± std [t interval]` over the seeds; for one seed the value and `(1 seed)` (left out where
    `seed_note` is False: a table that states it once), with `one_run`, an interval that one run measured itself,
    marked by `one_run_label` (`images`: the bootstrap over the evaluation images; `passes`: the timed passes)."""
    if stat is None or not math.isfinite(stat.mean):
        return ""
    if stat.ci95 is not None:
        return f"{mean_std_text(stat, digits=digits)} {interval_text(stat.ci95, digits)}"
    notes = [ONE_SEED_NOTE] if seed_note else []
    if one_run is not None:
        notes.append(f"{one_run_label} {interval_text(one_run, digits)}".strip())
    text = _number(stat.mean, digits)
    return f"{text} ({'; '.join(notes)})" if notes else text


def difference_text(difference: PairedDifference | None, digits: int = 2, seed_note: bool = True) -> str:
    """`+1.00 [+0.75, +1.25] better`: the mean per-seed difference, its t interval and the verdict; one seed:
    `+1.00 (1 seed)`."""
    if difference is None:
        return ""
    text = _number(difference.mean, digits, signed=True)
    if difference.ci95 is None or difference.verdict == ONE_SEED:
        return f"{text} ({ONE_SEED_NOTE})" if seed_note else text
    return f"{text} {interval_text(difference.ci95, digits, signed=True)} {difference.verdict}"


def speedup_text(speedup: Speedup | None, seed_note: bool = True) -> str:
    """`2.00x [1.90x, 2.10x] faster` over seeds; one seed: its paired rounds' interval and verdict, marked
    `(1 seed, 7 rounds)`, or `2.00x (1 seed)` where it has no rounds."""
    if speedup is None:
        return ""
    text = f"{speedup.value:.2f}x"
    notes = [ONE_SEED_NOTE] if seed_note and speedup.n == 1 else []
    if speedup.ci95 is not None:
        text += f" {interval_text(speedup.ci95, unit='x')}" + (f" {speedup.verdict}" if speedup.verdict else "")
        if speedup.n == 1:
            notes.append(f"{speedup.rounds} rounds" if speedup.rounds else "paired rounds")
    return f"{text} ({', '.join(notes)})" if notes else text


def ratio_text(stat: MeanInterval | None) -> str:
    """A ratio that seeds barely move (a file's size): `0.25x`, with the std over seeds where it has one."""
    if stat is None:
        return ""
    text = f"{stat.mean:.2f}x"
    return text if stat.std is None else f"{text} ± {stat.std:.2f}x"
