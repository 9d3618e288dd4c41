"""The report's table written out: CSV (raw numbers, unrounded, so the file parses back to what the table was
computed from) and Markdown (formatted for reading, context columns said once above it), from the rows that
edgecomp.report.table builds."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from edgecomp.evaluate.uncertainty import MeanInterval, PairedDifference
from edgecomp.report.intervals import Speedup, difference_text, mean_std_text, measure_text, speedup_text
from edgecomp.report.table import Row
from edgecomp.units import MB

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
)
MARKDOWN_COLUMNS = (
    # (header, right-aligned)
    ("dataset", False),
    ("device", False),
    ("model", False),
    ("compressor", False),
    ("runtime", False),
    ("n", True),
    ("metric", False),
    ("accuracy (%)", True),
    ("Δ acc (pts)", True),
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

    change, speedup = row.accuracy_change, row.speedup_interval

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
        *stat(row.accuracy_pct),
        *interval(row.accuracy_pct),
        *bounds(row.accuracy_images_ci95),
        *stat(row.latency_ms),
        *interval(row.latency_ms),
        *bounds(row.latency_passes_ci95),
        *stat(row.size_bytes),
        *stat(row.gzip_bytes),
        *stat(row.compression_time_s),
        row.delta_accuracy_pts,
        *interval(change),
        change and change.verdict,
        row.speedup,
        *interval(speedup),
        speedup and speedup.verdict,
        speedup and speedup.rounds,
        row.size_ratio,
        row.gzip_ratio,
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


def markdown_cells(row: Row) -> list[str]:
    """The row's Markdown cells in MARKDOWN_COLUMNS order, formatted for reading."""
    key = row.key
    return [
        key.dataset,
        key.device or "-",
        key.model or "-",
        key.label,
        key.runtime or "-",
        str(len(row.seeds)),
        row.metric,
        measure_text(row.accuracy_pct, one_run=row.accuracy_images_ci95, one_run_label="images"),
        difference_text(row.accuracy_change),
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
    instead of repeated in each row: the usual sweep (one dataset, one device) then fits a wide terminal.
    """
    cells = [[cell.replace("|", "\\|") for cell in markdown_cells(row)] for row in rows]
    shown, caption = [], []
    for index, (header, _) in enumerate(MARKDOWN_COLUMNS):
        values = {line[index] for line in cells}
        if header in CONTEXT_COLUMNS and len(values) == 1:
            caption.append(f"{header}: {values.pop()}")
        else:
            shown.append(index)
    columns = [MARKDOWN_COLUMNS[i] for i in shown]
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
