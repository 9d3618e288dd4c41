"""A recipe's waterfall: the original model, then each stage's result, each with its change from the stage before
and from the original (accuracy in points; latency as a speed-up, before / after, > 1 faster; size, params and
FLOPs as after / before). Records of several seeds of one recipe give mean +- sample std per cell.

Pure functions on record dicts (the `recipe`, `baseline` and `previous` fields compress.py writes for a stage).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from edgecomp.report.comparison import LATENCY_STAT, median_latency, ratio, runtime_text

# The task's metrics in the waterfall: the headline accuracy, then what a detector is judged on besides.
WATERFALL_METRICS = {"classification": ("top1",), "detection": ("map", "map_small")}
MB = 1e6


def _mean_std(values: Sequence[float | None]) -> tuple[float, float | None] | None:
    known = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not known:
        return None
    return statistics.fmean(known), (statistics.stdev(known) if len(known) > 1 else None)


def _cell(values: Sequence[float | None], form: Callable[[float], str]) -> str:
    stat = _mean_std(values)
    if stat is None:
        return "-"
    mean, std = stat
    return form(mean) if std is None else f"{form(mean)} ± {form(std).lstrip('+')}"


def _metric(measured: dict[str, Any], key: str) -> float | None:
    value = (measured.get("metrics") or {}).get(key)
    return None if value is None else 100 * float(value)


def waterfall_table(records: Sequence[dict[str, Any]]) -> str:
    """The Markdown waterfall of one recipe's stage records (one or several seeds)."""
    if not records:
        raise ValueError("a waterfall needs at least one stage record")
    first = records[0]
    recipe = first["recipe"]
    metrics = WATERFALL_METRICS.get(first["task"], ())
    seeds = sorted({record["seed"] for record in records})
    by_stage: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_stage.setdefault(record["recipe"]["index"], []).append(record)
    # The original model once per seed (every stage record of a seed carries the same `baseline`).
    originals = list({record["seed"]: record["baseline"] for record in records}.values())

    header = ["stage", "compressor", "runtime"]
    for key in metrics:
        header += [f"{key} (%)", "Δ prev (pts)", "Δ base (pts)"]
    header += [
        f"latency (ms, {LATENCY_STAT})",
        "speed-up prev",
        "speed-up base",
        "size (MB)",
        "× size base",
        "params (M)",
        "FLOPs (M)",
        "× FLOPs base",
    ]

    def row(name: str, compressor: str, group: list[tuple[dict, dict | None, dict | None]]) -> list[str]:
        """`group`: (measured, previous, original) per seed."""
        cells = [name, compressor, runtime_text(group[0][0])]
        for key in metrics:
            cells.append(_cell([_metric(m, key) for m, _, _ in group], lambda v: f"{v:.2f}"))
            for side in (1, 2):
                deltas = [
                    None
                    if item[side] is None or _metric(item[0], key) is None or _metric(item[side], key) is None
                    else _metric(item[0], key) - _metric(item[side], key)
                    for item in group
                ]
                cells.append(_cell(deltas, lambda v: f"{v:+.2f}") if group[0][side] is not None else "")
        cells.append(_cell([median_latency(m) for m, _, _ in group], lambda v: f"{v:.2f}"))
        for side in (1, 2):
            speedups = [
                None if item[side] is None else ratio(median_latency(item[side]), median_latency(item[0]))
                for item in group
            ]
            cells.append(_cell(speedups, lambda v: f"{v:.2f}x") if group[0][side] is not None else "")
        cells.append(_cell([None if m.get("size_bytes") is None else m["size_bytes"] / MB for m, _, _ in group],
                           lambda v: f"{v:.2f}"))  # fmt: skip
        sizes = [None if o is None else ratio(m.get("size_bytes"), o.get("size_bytes")) for m, _, o in group]
        cells.append(_cell(sizes, lambda v: f"{v:.2f}x") if group[0][2] is not None else "")
        cells.append(_cell([None if m.get("params") is None else m["params"] / 1e6 for m, _, _ in group],
                           lambda v: f"{v:.3f}"))  # fmt: skip
        cells.append(_cell([None if m.get("flops") is None else m["flops"] / 1e6 for m, _, _ in group],
                           lambda v: f"{v:.1f}"))  # fmt: skip
        flops = [None if o is None else ratio(m.get("flops"), o.get("flops")) for m, _, o in group]
        cells.append(_cell(flops, lambda v: f"{v:.2f}x") if group[0][2] is not None else "")
        return cells

    lines = [row("baseline", "-", [(original, None, None) for original in originals])]
    for index in sorted(by_stage):
        stage_records = by_stage[index]
        lines.append(
            row(
                f"{index + 1}. {stage_records[0]['recipe']['stage']}",
                stage_records[0]["compressor"] or "-",
                [(record, record.get("previous"), record.get("baseline")) for record in stage_records],
            )
        )

    title = (
        f"recipe={recipe['name']}: {first['model']} on {first['dataset']}, device={first['device']}, "
        f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
        + (" (mean ± std)" if len(seeds) > 1 else "")
        + (f"; stages' settings {recipe['variant']}" if recipe.get("variant") else "")
    )
    rule = "|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|"
    body = ["| " + " | ".join(cells) + " |" for cells in lines]
    return "\n".join([title, "", "| " + " | ".join(header) + " |", rule, *body]) + "\n"


def recipe_waterfalls(records: Sequence[dict[str, Any]]) -> list[str]:
    """One waterfall per recipe (and variant of its stages' settings) run on one (dataset, model, device), its seeds
    together; a stage recorded twice for a seed (a re-run) counts once, the latest."""
    groups: dict[tuple, dict[tuple, dict[str, Any]]] = {}
    for record in sorted(records, key=lambda r: str(r.get("created") or "")):
        recipe = record.get("recipe")
        if not recipe:
            continue
        group = (
            recipe["name"],
            recipe.get("variant"),
            record["task"],
            record["dataset"],
            record["model"],
            record["device"],
        )
        groups.setdefault(group, {})[(record["seed"], recipe["index"])] = record
    return [waterfall_table(list(stages.values())) for _, stages in sorted(groups.items(), key=lambda g: g[0])]
