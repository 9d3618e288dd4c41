"""The report's table written out: CSV (raw numbers, unrounded, so the file parses back to what the table was
computed from) and Markdown (formatted for reading, context columns said once above it), from the rows that
edgecomp.report.table builds.

A task's reported metrics besides its accuracy (a detector's map_small) get columns of their own, after the
accuracy's: in the CSV always (the same columns in every table.csv, empty in a row whose task does not report the
metric), in the Markdown only where a row's task reports it (a classification table has none).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from edgecomp.evaluate.evaluator import REPORTED_METRICS
from edgecomp.evaluate.uncertainty import MeanInterval, PairedDifference
from edgecomp.report.intervals import Speedup, difference_text, mean_std_text, measure_text, speedup_text
from edgecomp.report.table import MetricSummary, Row
from edgecomp.units import MB

# The reported metrics besides the accuracy, over every task, in order (detection's map_small).
FURTHER_METRICS = tuple(dict.fromkeys(metric for metrics in REPORTED_METRICS.values() for metric in metrics[1:]))


def metric_csv_columns(metric: str) -> tuple[str, ...]:
    """The CSV columns of a further reported metric: what the accuracy's columns hold, named after the metric."""
    return (
        f"{metric}_n",  # the seeds with a value for it (map_small has none on data without small objects)
        f"{metric}_pct_mean",
        f"{metric}_pct_std",
        f"{metric}_pct_ci95_low",  # the t interval over those seeds (empty for one)
        f"{metric}_pct_ci95_high",
        f"{metric}_pct_images_ci95_low",  # one seed: the bootstrap interval over its evaluation images
        f"{metric}_pct_images_ci95_high",
        f"delta_{metric}_pts",  # the mean per-seed difference to the record's own baseline
        f"delta_{metric}_pts_ci95_low",
        f"delta_{metric}_pts_ci95_high",
        f"delta_{metric}_verdict",  # better, worse, same within noise; one seed
        f"delta_{metric}_n",  # the seeds where both sides have a value
    )


CSV_COLUMNS = (
    "task",
    "dataset",
    "device",
    "model",
    "compressor",
    "settings",
    "runtime",
    "metric",
    "n",
    "seeds",
    "accuracy_pct_mean",
    "accuracy_pct_std",
    "accuracy_pct_ci95_low",  # the t interval over the seeds (empty for one seed)
    "accuracy_pct_ci95_high",
    "accuracy_pct_images_ci95_low",  # one seed: the bootstrap interval over its evaluation images, where recorded
    "accuracy_pct_images_ci95_high",
    "latency_ms_mean",
    "latency_ms_std",
    "latency_ms_ci95_low",
    "latency_ms_ci95_high",
    "latency_ms_passes_ci95_low",  # one seed: the interval of the median of its timed passes, where recorded
    "latency_ms_passes_ci95_high",
    "size_bytes_mean",
    "size_bytes_std",
    "gzip_bytes_mean",
    "gzip_bytes_std",
    "compression_time_s_mean",
    "compression_time_s_std",
    "delta_accuracy_pts",  # the mean per-seed difference to the record's own baseline
    "delta_accuracy_pts_ci95_low",
    "delta_accuracy_pts_ci95_high",
    "delta_accuracy_verdict",  # better, worse, same within noise; one seed
    "speedup",
    "speedup_ci95_low",  # over the seeds, or for one seed over its paired timing rounds
    "speedup_ci95_high",
    "speedup_verdict",  # faster, slower, same within noise; empty without an interval
    "speedup_rounds",  # one seed: the paired rounds its interval is from
    "size_ratio",
    "gzip_ratio",
    *(column for metric in FURTHER_METRICS for column in metric_csv_columns(metric)),
)
# (header, right-aligned)
_MARKDOWN_CONTEXT = (
    ("dataset", False),
    ("device", False),
    ("model", False),
    ("compressor", False),
    ("runtime", False),
    ("n", True),
    ("metric", False),
)
_MARKDOWN_ACCURACY = (("accuracy (%)", True), ("Δ acc (pts)", True))
_MARKDOWN_MEASURES = (
    ("latency (ms, median)", True),
    ("speed-up (base/comp)", True),
    ("size (MB)", True),
    ("× size", True),
    ("gzip (MB)", True),
    ("× gzip", True),
    ("compress (s)", True),
)
# Columns that give a row's context rather than its result: left out of the Markdown table (and said once above it)
# when every row has the same value.
CONTEXT_COLUMNS = ("dataset", "device", "runtime", "metric")


def csv_values(row: Row) -> list[Any]:
    """The row's CSV cells in CSV_COLUMNS order: raw numbers (bytes, ms, percent, seconds), None where unknown."""
    key = row.key

    def stat(value: MeanInterval | None) -> list[float | None]:
        return [None, None] if value is None else [value.mean, value.std]

    def bounds(ci95: tuple[float, float] | None) -> list[float | None]:
        return [None, None] if ci95 is None else list(ci95)

    def interval(measure: MeanInterval | PairedDifference | Speedup | None) -> list[float | None]:
        return bounds(None if measure is None else measure.ci95)

    def metric(summary: MetricSummary | None) -> tuple[list[Any], list[Any]]:
        """([n, mean, std, t interval, images' interval], [change, its interval, verdict, n]) of a reported metric."""
        if summary is None:
            return [None] * 7, [None] * 5
        pct, change = summary.pct, summary.change
        return (
            [pct and pct.n, *stat(pct), *interval(pct), *bounds(summary.images_ci95)],
            [summary.delta_pts, *interval(change), change and change.verdict, change and change.n],
        )

    # the accuracy's columns have no n of their own (the row's is theirs)
    (_, *accuracy), (*accuracy_change, _) = metric(row.accuracy)
    further = [cell for name in FURTHER_METRICS for cells in metric(row.metric_summary(name)) for cell in cells]
    speedup = row.speedup_interval

    return [
        key.task,
        key.dataset,
        key.device,
        key.model,
        key.compressor,
        key.settings_label,
        key.runtime,
        row.metric,
        len(row.seeds),
        ";".join(str(seed) for seed in row.seeds),
        *accuracy,
        *stat(row.latency_ms),
        *interval(row.latency_ms),
        *bounds(row.latency_passes_ci95),
        *stat(row.size_bytes),
        *stat(row.gzip_bytes),
        *stat(row.compression_time_s),
        *accuracy_change,
        row.speedup,
        *interval(speedup),
        speedup and speedup.verdict,
        speedup and speedup.rounds,
        row.size_ratio,
        row.gzip_ratio,
        *further,
    ]


def to_csv(rows: Sequence[Row]) -> str:
    """Numbers unrounded (repr), so that the file parses back to exactly what the table was computed from."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(["" if value is None else value for value in csv_values(row)])
    return buffer.getvalue()


def _times(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def metric_markdown_columns(metric: str) -> tuple[tuple[str, bool], ...]:
    """The Markdown columns of a further reported metric, like the accuracy's: `map_small (%)`, `Δ map_small (pts)`."""
    return ((f"{metric} (%)", True), (f"Δ {metric} (pts)", True))


def markdown_columns(further: Sequence[str] = ()) -> tuple[tuple[str, bool], ...]:
    """(header, right-aligned) of a table showing the further reported metrics `further` after the accuracy."""
    added = tuple(column for metric in further for column in metric_markdown_columns(metric))
    return (*_MARKDOWN_CONTEXT, *_MARKDOWN_ACCURACY, *added, *_MARKDOWN_MEASURES)


def _seeds_note(text: str, n: int, seeds: int) -> str:
    """A number over fewer of the row's seeds than all (a seed without map_small) says how many; one seed already
    says `1 seed`."""
    return f"{text} ({n} of {seeds} seeds)" if text and 1 < n < seeds else text


def metric_cells(row: Row, summary: MetricSummary | None) -> list[str]:
    """A reported metric's two cells: `mean ± std [t interval]` (one seed: its images' bootstrap interval) and the
    paired change `+1.00 [+0.75, +1.25] better`; empty where the row's task does not report it."""
    if summary is None:
        return ["", ""]
    seeds = len(row.seeds)
    measured = measure_text(summary.pct, one_run=summary.images_ci95, one_run_label="images")
    change = difference_text(summary.change)
    return [
        _seeds_note(measured, 0 if summary.pct is None else summary.pct.n, seeds),
        _seeds_note(change, 0 if summary.change is None else summary.change.n, seeds),
    ]


def markdown_cells(row: Row, further: Sequence[str] = ()) -> list[str]:
    """The row's Markdown cells in `markdown_columns(further)` order, formatted for reading."""
    key = row.key
    return [
        key.dataset,
        key.device or "-",
        key.model or "-",
        key.label,
        key.runtime or "-",
        str(len(row.seeds)),
        row.metric,
        *metric_cells(row, row.accuracy),
        *(cell for metric in further for cell in metric_cells(row, row.metric_summary(metric))),
        measure_text(row.latency_ms, one_run=row.latency_passes_ci95, one_run_label="passes"),
        speedup_text(row.speedup_interval),
        mean_std_text(row.size_bytes, MB),
        _times(row.size_ratio),
        mean_std_text(row.gzip_bytes, MB),
        _times(row.gzip_ratio),
        mean_std_text(row.compression_time_s, digits=1),
    ]


def to_markdown(rows: Sequence[Row]) -> str:
    """A GitHub Markdown table, its columns padded so that it also reads as plain text in a terminal.

    A context column (dataset, device, metric) with one value in every row is stated once in a line above the table
    instead of repeated in each row: the usual sweep (one dataset, one device) then fits a wide terminal. A further
    reported metric (a detector's map_small) has its columns where some row's task reports it.
    """
    further = [metric for metric in FURTHER_METRICS if any(row.metric_summary(metric) for row in rows)]
    all_columns = markdown_columns(further)
    cells = [[cell.replace("|", "\\|") for cell in markdown_cells(row, further)] for row in rows]
    shown, caption = [], []
    for index, (header, _) in enumerate(all_columns):
        values = {line[index] for line in cells}
        if header in CONTEXT_COLUMNS and len(values) == 1:
            caption.append(f"{header}: {values.pop()}")
        else:
            shown.append(index)
    columns = [all_columns[i] for i in shown]
    body = [[line[i] for i in shown] for line in cells]
    headers = [header for header, _ in columns]
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]

    def line(texts: list[str]) -> str:
        padded = (
            text.rjust(width) if right else text.ljust(width)
            for text, width, (_, right) in zip(texts, widths, columns, strict=True)
        )
        return "| " + " | ".join(padded) + " |"

    # GitHub's alignment row: `---:` right-aligns a column; the dashes span the padded cell.
    rule = "|".join(
        "-" * (width + 1) + ":" if right else "-" * (width + 2)
        for width, (_, right) in zip(widths, columns, strict=True)
    )
    table = [line(headers), f"|{rule}|", *(line(texts) for texts in body)]
    return "\n".join(([", ".join(caption), ""] if caption else []) + table) + "\n"
