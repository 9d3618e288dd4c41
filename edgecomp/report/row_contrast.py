"""Compressed rows of the table against each other: where several compressors ran on the same task, dataset, model,
device and runtime over the same seeds, each from that seed's trained baseline (a study's arms, e.g.
experiment=scalekd_sod's finetune, fitnet, od2017 and scalekd), each pair of those rows, A - B, paired by seed: per
seed the difference of the task's reported metrics (edgecomp.evaluate.evaluator.REPORTED_METRICS), taken only where
both records started from the same trained baseline (`baseline.checkpoint`, known on both), so the spread between
seeds that both share drops out; their mean, Student's t 95 % interval and verdict (`better`, `worse`,
`same within noise`; edgecomp.evaluate.uncertainty).

The table (edgecomp.report.table) says what each compressed row changed against its own baseline; this says whether
one compressed row ended above another, which the two rows' changes alone cannot tell. A cell over fewer seeds than
the pair's two rows have between them (a seed that one row lacks, or whose two records started from different
baselines, or a metric a seed has no value for) says over how many (`(2 of 3 seeds)`). A pair without one seed from
a known, shared baseline has no line; a group without a line has no table. Recipes' stages are left out: the recipes
are compared with each other stage by stage by edgecomp.report.recipe_contrast.

Pure functions on record dicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

from edgecomp.evaluate.evaluator import REPORTED_METRICS
from edgecomp.evaluate.uncertainty import paired_difference
from edgecomp.report.intervals import difference_text
from edgecomp.report.recipe_contrast import same_baseline
from edgecomp.report.table import RowKey, records_by_row, sort_value
from edgecomp.report.waterfall import points_difference, seeds_caption, titled_table


def is_compressed(record: dict[str, Any]) -> bool:
    """A record that compress.py measured against its baseline; compressor=none deploys the baseline itself."""
    return isinstance(record.get("baseline"), dict) and record.get("compressor") != "none"


def _from_known_same_baseline(x: dict[str, Any], y: dict[str, Any]) -> bool:
    """Both records started from the same trained baseline, and the record says which: a baseline without its
    checkpoint (a record older than that field) cannot show it was the other's."""
    return bool((x.get("baseline") or {}).get("checkpoint")) and same_baseline(x, y)


def comparable_rows(records: Sequence[dict[str, Any]]) -> dict[tuple, dict[RowKey, dict[Any, dict[str, Any]]]]:
    """The table's compressed rows (edgecomp.report.table.records_by_row), recipes' stages left out, grouped by what
    makes two comparable (task, dataset, device, model, runtime), each row's records by seed; rows and groups in the
    table's order."""
    groups: dict[tuple, dict[RowKey, dict[Any, dict[str, Any]]]] = {}
    for key, row_records in records_by_row([record for record in records if not record.get("recipe")]).items():
        compressed = {record["seed"]: record for record in row_records if is_compressed(record)}
        if key.compressor != "none" and compressed:
            group = (key.task, key.dataset, key.device, key.model, key.runtime)
            groups.setdefault(group, {})[key] = compressed
    return groups


def _difference_cell(pairs: list[tuple[dict[str, Any], dict[str, Any]]], metric: str, seeds: int, notes: bool) -> str:
    """A - B in `metric` over `pairs` (one per seed): mean [interval] verdict, and over how many of the pair's
    `seeds` where fewer."""
    difference = paired_difference([points_difference(a, b, metric) for a, b in pairs])
    if difference is None:
        return "-"
    if difference.n < seeds:
        return f"{difference_text(difference, seed_note=False)} ({difference.n} of {seeds} seeds)"
    return difference_text(difference, seed_note=notes)


def contrast_table(rows: dict[RowKey, dict[Any, dict[str, Any]]]) -> str | None:
    """The Markdown table of each pair of the group's compressed rows, A before B in the table's order, over the
    seeds where both started from the same baseline; None where no pair has such a seed. `rows`: row key -> seed ->
    record."""
    keys = list(rows)
    sample = next(iter(rows[keys[0]].values()))
    metrics = REPORTED_METRICS.get(sample["task"], ())
    seeds = sorted({seed for records in rows.values() for seed in records}, key=sort_value)
    lines = []
    for first, second in combinations(keys, 2):
        a, b = rows[first], rows[second]
        shared = sorted(set(a) & set(b), key=sort_value)
        pairs = [(a[seed], b[seed]) for seed in shared if _from_known_same_baseline(a[seed], b[seed])]
        if not pairs:
            continue
        both = len(set(a) | set(b))
        lines.append(
            [first.label, second.label, *(_difference_cell(pairs, metric, both, len(seeds) > 1) for metric in metrics)]
        )
    if not lines:
        return None
    runtime = f", runtime {keys[0].runtime}" if keys[0].runtime else ""
    title = (
        f"compressors against each other (A - B): {sample['model']} on {sample['dataset']}, "
        f"device={sample['device']}{runtime}, "
        + seeds_caption(seeds, "per-seed differences from the same baseline: mean [95 % interval] verdict")
    )
    header = ["A", "B", *(f"Δ {metric} (pts)" for metric in metrics)]
    return titled_table(title, header, lines, text_columns=2)


def row_contrasts(records: Sequence[dict[str, Any]]) -> list[str]:
    """One table per group of comparable compressed rows (comparable_rows) with at least one pair to compare, in
    the table's order."""
    tables = []
    for rows in comparable_rows(records).values():
        if len(rows) > 1 and (table := contrast_table(rows)):
            tables.append(table)
    return tables
