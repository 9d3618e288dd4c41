"""A recipe's waterfall: the original model, then each stage's result, each with its change from the stage before
and from the original (accuracy in points; latency as a speed-up, before / after, > 1 faster; size, params and
FLOPs as after / before).

Records of several seeds of one recipe give, per cell, what the report's table gives (edgecomp.report.intervals):
accuracy and latency as mean ± std with the t 95 % interval over the seeds; the changes paired by seed (each seed's
stage against that seed's stage before and original) with their interval and verdict (`better`, `worse`,
`same within noise`); the speed-ups from each stage record's paired timing rounds (`vs_baseline.latency_vs_previous`
and `vs_baseline.latency`; the ratio of the medians for a record older than those), their geometric mean over the
seeds with its interval and verdict (`faster`, `slower`, `same within noise`). A waterfall of one seed says so in
its title and shows only the intervals that run measured itself (its paired rounds); a stage that fewer seeds
reached says `1 seed` in the cells of one.

Pure functions on record dicts (the `recipe`, `baseline` and `previous` fields compress.py writes for a stage).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgecomp.evaluate.evaluator import REPORTED_METRICS
from edgecomp.evaluate.uncertainty import mean_interval, paired_difference
from edgecomp.report.comparison import LATENCY_STAT, median_latency, runtime_text
from edgecomp.report.intervals import (
    difference_text,
    mean_std_text,
    measure_text,
    ratio_text,
    seed_latency_ratio,
    speedup_over_seeds,
    speedup_text,
)
from edgecomp.units import MB, ratio

# The task's metrics in the waterfall: those of the report's table, the headline accuracy first.
WATERFALL_METRICS = REPORTED_METRICS
# Where a stage record keeps its paired latency ratio against the stage before and against the original.
PAIRED_LATENCY_KEYS = {1: "latency_vs_previous", 2: "latency"}


def metric_points(measured: dict[str, Any], key: str) -> float | None:
    value = (measured.get("metrics") or {}).get(key)
    return None if value is None else 100 * float(value)


def points_difference(measured: dict[str, Any], against: dict[str, Any] | None, key: str) -> float | None:
    """`measured`'s metric `key` minus `against`'s, in points; None where either lacks it."""
    ours, theirs = metric_points(measured, key), None if against is None else metric_points(against, key)
    return None if ours is None or theirs is None else ours - theirs


def seeds_caption(seeds: Sequence[Any], over_seeds: str) -> str:
    """A table title's seeds: `seeds 0, 1, 2 (<over_seeds>)`, what its numbers over the seeds are; for one seed,
    that it has no interval over seeds."""
    listed = ", ".join(map(str, seeds))
    if len(seeds) > 1:
        return f"seeds {listed} ({over_seeds})"
    return f"seed {listed} (one seed: no interval over seeds)"


def titled_table(title: str, header: list[str], lines: list[list[str]], text_columns: int = 3) -> str:
    """A Markdown table under its title: the first `text_columns` columns left-aligned, the rest right-aligned."""
    rule = "|" + "|".join("---" if i < text_columns else "---:" for i in range(len(header))) + "|"
    body = ["| " + " | ".join(cells) + " |" for cells in lines]
    return "\n".join([title, "", "| " + " | ".join(header) + " |", rule, *body]) + "\n"


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

    # One seed in all: the title says so once, not every cell.
    seed_note = len(seeds) > 1

    def or_dash(text: str) -> str:
        return text or "-"

    def row(name: str, compressor: str, group: list[tuple[dict, dict | None, dict | None]]) -> list[str]:
        """`group`: (measured, previous, original) per seed."""
        cells = [name, compressor, runtime_text(group[0][0])]
        for key in metrics:
            cells.append(
                or_dash(measure_text(mean_interval([metric_points(m, key) for m, _, _ in group]), seed_note=seed_note))
            )
            for side in (1, 2):
                if group[0][side] is None:
                    cells.append("")
                    continue
                deltas = [points_difference(item[0], item[side], key) for item in group]
                cells.append(or_dash(difference_text(paired_difference(deltas), seed_note=seed_note)))
        cells.append(
            or_dash(measure_text(mean_interval([median_latency(m) for m, _, _ in group]), seed_note=seed_note))
        )
        for side in (1, 2):
            if group[0][side] is None:
                cells.append("")
                continue
            ratios = [seed_latency_ratio(item[0], item[side], PAIRED_LATENCY_KEYS[side]) for item in group]
            cells.append(or_dash(speedup_text(speedup_over_seeds(ratios), seed_note=seed_note)))
        sizes = mean_interval([m.get("size_bytes") for m, _, _ in group])
        cells.append(or_dash(mean_std_text(sizes, MB)))
        size_ratios = [None if o is None else ratio(m.get("size_bytes"), o.get("size_bytes")) for m, _, o in group]
        cells.append(or_dash(ratio_text(mean_interval(size_ratios))) if group[0][2] is not None else "")
        cells.append(or_dash(mean_std_text(mean_interval([m.get("params") for m, _, _ in group]), 1e6, digits=3)))
        cells.append(or_dash(mean_std_text(mean_interval([m.get("flops") for m, _, _ in group]), 1e6, digits=1)))
        flops = [None if o is None else ratio(m.get("flops"), o.get("flops")) for m, _, o in group]
        cells.append(or_dash(ratio_text(mean_interval(flops))) if group[0][2] is not None else "")
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
        + seeds_caption(seeds, "mean ± std [95 % interval over the seeds]; changes paired by seed")
        + (f"; stages' settings {recipe['variant']}" if recipe.get("variant") else "")
    )
    return titled_table(title, header, lines)


def recipe_stage_records(records: Sequence[dict[str, Any]]) -> dict[tuple, dict[str, dict[tuple[int, int], dict]]]:
    """The stage records of recipes, grouped by what makes two recipes comparable (their stages' settings variant,
    task, dataset, model, device), then by recipe name, then by (seed, stage index); a stage recorded twice for a
    seed (a re-run) counts once, the latest."""
    groups: dict[tuple, dict[str, dict[tuple[int, int], dict[str, Any]]]] = {}
    for record in sorted(records, key=lambda r: str(r.get("created") or "")):
        recipe = record.get("recipe")
        if not recipe:
            continue
        group = (recipe.get("variant") or "", record["task"], record["dataset"], record["model"], record["device"])
        groups.setdefault(group, {}).setdefault(recipe["name"], {})[(record["seed"], recipe["index"])] = record
    return groups


def recipe_waterfalls(records: Sequence[dict[str, Any]]) -> list[str]:
    """One waterfall per recipe (and variant of its stages' settings) run on one (dataset, model, device), its seeds
    together, in the order of the recipes' names."""
    waterfalls = [
        (name, group, waterfall_table(list(stages.values())))
        for group, recipes in recipe_stage_records(records).items()
        for name, stages in recipes.items()
    ]
    return [table for *_, table in sorted(waterfalls, key=lambda item: (item[0], tuple(map(str, item[1]))))]
