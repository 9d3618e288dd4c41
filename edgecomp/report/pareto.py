"""The Pareto plot: accuracy vs latency of every row of the table, one panel per (task, dataset, device), since
latencies on different devices or accuracies on different datasets do not compare.

Each point carries its 95 % intervals where its row has them: on the accuracy axis the t interval over the seeds,
or for a row of one seed the bootstrap interval over its evaluation images (`metrics_ci95`); on the latency axis the
t interval over the seeds, or for one seed the interval of the median of its timed passes (`latency_ms.ci95`). A
side with no interval gets no bar.

Drawn on a bare matplotlib Figure (rendered by the Agg canvas), never through pyplot: no GUI backend is needed and
no global state is touched.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from edgecomp.evaluate.evaluator import metric_label
from edgecomp.report.table import Row

# The bars thin: two seeds give a wide t interval, which must not hide the points.
ERRORBAR_STYLE: dict[str, Any] = {"elinewidth": 0.9, "capsize": 2.5, "capthick": 0.9}

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
# Latency on a log axis once the fastest and the slowest point are this far apart.
LOG_SCALE_SPAN = 10.0
# A panel with more points than this labels only its Pareto front (the table has every row's settings): beyond a
# dozen, labels beside every point overlap until none can be read.
LABEL_EVERY_POINT_UP_TO = 12


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (latency, accuracy) points no other point beats: none is at least as fast and more accurate, or faster
    and at least as accurate. In order of latency, so accuracy rises along it."""
    front: list[tuple[float, float]] = []
    for latency, accuracy in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or accuracy > front[-1][1]:
            front.append((latency, accuracy))
    return front


class _Point(NamedTuple):
    """A row on the plot, at its mean latency and mean accuracy."""

    row: Row
    latency: float
    accuracy: float


def _panels(rows: Sequence[Row]) -> dict[tuple[str, str, str], list[_Point]]:
    """The plottable rows (an accuracy and a latency above 0) as points, per (task, dataset, device)."""
    panels: dict[tuple[str, str, str], list[_Point]] = {}
    for row in rows:
        if row.accuracy_pct is not None and row.latency_ms is not None and row.latency_ms.mean > 0:
            key = (row.key.task, row.key.dataset, str(row.key.device))
            panels.setdefault(key, []).append(_Point(row, row.latency_ms.mean, row.accuracy_pct.mean))
    return panels


def _bar(mean: float, ci95: tuple[float, float] | None) -> list[list[float]] | None:
    """matplotlib's asymmetric error of `mean` for the interval (below, above), None without one. An interval
    that does not hold the mean (a bootstrap's percentiles can miss it) is drawn from the mean to its far end."""
    if ci95 is None:
        return None
    low, high = ci95
    return [[max(mean - low, 0.0)], [max(high - mean, 0.0)]]


def plot_pareto(rows: Sequence[Row]) -> bytes:
    """The PNG bytes of `pareto_figure(rows)`."""
    buffer = io.BytesIO()
    pareto_figure(rows).savefig(buffer, format="png")
    return buffer.getvalue()


def pareto_figure(rows: Sequence[Row]) -> Figure:
    """The plot: per row a marker at (mean latency, mean accuracy) with bars of its 95 % intervals on both axes
    where it has them, the marker's shape by compressor and its colour by model, the row's settings written beside
    it, and the Pareto front as a step line (the best accuracy within each latency budget)."""
    panels = _panels(rows)
    compressors = sorted({row.key.compressor or "-" for row in rows}, key=lambda c: (c != "none", c))
    models = sorted({row.key.model or "-" for row in rows})
    marker = {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(compressors)}
    colour = {name: f"C{i % 10}" for i, name in enumerate(models)}

    columns = min(len(panels), 2) or 1
    lines = max(math.ceil(len(panels) / columns), 1)
    figure = Figure(figsize=(6.0 * columns + 2.5, 4.5 * lines), dpi=110, layout="constrained")
    if not panels:
        axes = figure.subplots()
        axes.text(0.5, 0.5, "no row has both an accuracy and a latency", ha="center", va="center")
        axes.set_axis_off()
    for index, ((task, dataset, device), points) in enumerate(sorted(panels.items())):
        axes = figure.add_subplot(lines, columns, index + 1)
        front = pareto_front([(point.latency, point.accuracy) for point in points])
        on_front = set(front)
        label_all = len(points) <= LABEL_EVERY_POINT_UP_TO
        for row, latency, accuracy in points:
            axes.errorbar(
                latency,
                accuracy,
                xerr=_bar(latency, row.latency_ci95),
                yerr=_bar(accuracy, row.accuracy_ci95),
                marker=marker[row.key.compressor or "-"],
                color=colour[row.key.model or "-"],
                markersize=7,
                linestyle="none",
                **ERRORBAR_STYLE,
            )
            # The runtime and precision beside every point: a deployed baseline and a quantized file share the
            # panel, and a point's runtime is part of what it means.
            if label_all:
                note = " ".join(part for part in (row.key.settings_label, row.key.runtime) if part)
            elif (latency, accuracy) in on_front:
                note = " ".join(part for part in (row.key.model, row.key.settings_label) if part)
            else:
                note = ""
            if note:
                axes.annotate(
                    note,
                    (latency, accuracy),
                    xytext=(4, 4),
                    textcoords="offset points",
                    fontsize=7,
                )
        axes.step(
            [latency for latency, _ in front],
            [accuracy for _, accuracy in front],
            where="post",
            color="0.4",
            linewidth=1,
            linestyle="--",
            zorder=0,
        )
        latencies = [point.latency for point in points]
        if max(latencies) > LOG_SCALE_SPAN * min(latencies):
            axes.set_xscale("log")
            # Ticks at 1, 2 and 5 of each decade, as plain numbers (0.2, 1, 5) rather than powers of ten, and no
            # labels on the minor ticks, which overlap.
            axes.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_xlabel(f"latency on {device} (median ms per image)")
        axes.set_ylabel(f"{metric_label(points[0].row.metric)} (%)")
        axes.set_title(f"{dataset} ({task}) on {device}", fontsize=10)
        axes.grid(True, which="both", alpha=0.3)

    # Each compressor's runtime(s) in its legend entry, so that a panel whose points are not all labelled still says
    # what ran each point.
    runtimes: dict[str, set[str]] = {}
    for row in rows:
        runtimes.setdefault(row.key.compressor or "-", set()).add(row.key.runtime or "")
    handles = [
        Line2D(
            [],
            [],
            color="0.3",
            marker=marker[name],
            linestyle="none",
            label=name + "".join(f" ({runtime})" for runtime in sorted(runtimes[name] - {""})),
        )
        for name in compressors
    ]
    handles += [Line2D([], [], color=colour[name], linewidth=4, label=name) for name in models]
    handles.append(Line2D([], [], color="0.4", linestyle="--", label="Pareto front"))
    if any(point.row.accuracy_ci95 or point.row.latency_ci95 for points in panels.values() for point in points):
        handles.append(
            Line2D(
                [],
                [],
                color="0.3",
                marker="|",
                markersize=9,
                linestyle="-",
                linewidth=0.9,
                label="95 % interval: over seeds;\none seed: images, passes",
            )
        )
    if panels:
        figure.legend(handles=handles, loc="outside right upper", fontsize=8, title="compressor / model")
    return figure
