"""Recipes against each other: where two recipes of as many stages ran on the same dataset, model and device with
the same seeds (a recipe and its control, e.g. experiment=recipe_yolo's ScaleKD recovery against plain fine-tuning,
or one recipe under two settings of its stages), each stage of one against the same-numbered stage of the other,
paired by seed: per seed the difference of the headline metrics, taken only where both started from the same
trained baseline (its checkpoint), so the spread between seeds that both share drops out; their mean, Student's t
95 % interval and verdict (`better`, `worse`, `same within noise`; edgecomp.evaluate.uncertainty).

A recipe's waterfall (edgecomp.report.waterfall) says what each stage bought against the stage before; this says
whether one recipe's stage ended above the other's, which the waterfalls' means alone cannot tell.

Pure functions on record dicts (the `recipe` field compress.py writes for a stage).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

from edgecomp.evaluate.uncertainty import paired_difference
from edgecomp.report.intervals import difference_text
from edgecomp.report.waterfall import (
    WATERFALL_METRICS,
    points_difference,
    recipe_stage_records,
    seeds_caption,
    titled_table,
)


def same_baseline(x: dict[str, Any], y: dict[str, Any]) -> bool:
    """Both stages of one seed start from the same trained baseline (the checkpoint the recipe was given)."""
    return (x.get("baseline") or {}).get("checkpoint") == (y.get("baseline") or {}).get("checkpoint")


def contrast_table(first: str, second: str, stages: dict[str, dict[tuple[int, int], dict[str, Any]]]) -> str | None:
    """The Markdown table of recipe `first` minus recipe `second`, stage by stage, over the seeds where both ran the
    stage from the same baseline; None where there is no such stage. `stages`: recipe label -> (seed, stage index)
    -> record."""
    a, b = stages[first], stages[second]
    shared = sorted(key for key in set(a) & set(b) if same_baseline(a[key], b[key]))
    if not shared:
        return None
    sample = a[shared[0]]
    metrics = WATERFALL_METRICS.get(sample["task"], ())
    seeds = sorted({seed for seed, _ in shared})
    header = ["stage", first, second, *(f"Δ {key} (pts)" for key in metrics)]
    lines = []
    for index in sorted({index for _, index in shared}):
        pairs = [(a[key], b[key]) for key in shared if key[1] == index]
        cells = [str(index + 1), pairs[0][0]["recipe"]["stage"], pairs[0][1]["recipe"]["stage"]]
        if all(x.get("artifact") and x.get("artifact") == y.get("artifact") for x, y in pairs):
            lines.append(cells + ["the same run"] * len(metrics))  # a stage both recipes share, run once per seed
            continue
        # A stage that not every seed reached (a run cut short) says over how many its interval is.
        fewer = f" ({len(pairs)} of {len(seeds)} seeds)" if 1 < len(pairs) < len(seeds) else ""
        for key in metrics:
            deltas = [points_difference(x, y, key) for x, y in pairs]
            text = difference_text(paired_difference(deltas), seed_note=len(seeds) > 1)
            cells.append(text + fewer if text else "-")
        lines.append(cells)
    title = (
        f"recipe={first} - recipe={second}: {sample['model']} on {sample['dataset']}, device={sample['device']}, "
        + seeds_caption(seeds, "per-seed differences: mean [95 % interval] verdict")
    )
    return titled_table(title, header, lines)


def comparable_recipes(records: Sequence[dict[str, Any]]) -> dict[tuple, dict[str, dict[tuple[int, int], dict]]]:
    """The recipes' stage records grouped by (task, dataset, model, device), then by recipe label: its name, and
    its stages' settings variant where one name ran with several (a recipe against its own ablation), then by
    (seed, stage index). Only recipes of as many stages are comparable stage by stage: each group holds one length."""
    groups: dict[tuple, dict[tuple[str, str], dict[tuple[int, int], dict[str, Any]]]] = {}
    for (variant, *where), recipes in recipe_stage_records(records).items():
        for name, stages in recipes.items():
            length = len(next(iter(stages.values()))["recipe"].get("stages") or ())
            groups.setdefault((*where, length), {})[(name, variant)] = stages
    labelled: dict[tuple, dict[str, dict[tuple[int, int], dict]]] = {}
    for group, named_recipes in groups.items():
        names = [name for name, _ in named_recipes]
        labelled[group] = {
            name if names.count(name) == 1 else f"{name} ({variant})": stages
            for (name, variant), stages in named_recipes.items()
        }
    return labelled


def recipe_contrasts(records: Sequence[dict[str, Any]]) -> list[str]:
    """One table per pair of comparable recipes (comparable_recipes), in the order of their labels."""
    tables = []
    for _, recipes in sorted(comparable_recipes(records).items(), key=lambda item: tuple(map(str, item[0]))):
        for first, second in combinations(sorted(recipes), 2):
            table = contrast_table(first, second, recipes)
            if table:
                tables.append(table)
    return tables
