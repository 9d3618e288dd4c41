"""Latency, per the benchmark paper's protocol (Rachmanto et al. 2024, eq. 1).

A fixed set of N images is run through the predictor `warmup + runs` times in batches of the device's batch
size. Each pass is timed as a whole (the clock read after synchronising the device) and gives
ms per image = pass time x 1000 / N. The warm-up passes are discarded; the statistics are over the rest, with the
distribution-free 95 % interval of their median (`ci95`, edgecomp.evaluate.uncertainty.median_interval). Two
artifacts compared are timed in alternating rounds instead (edgecomp.evaluate.paired_latency, `rounds`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
import torch

from edgecomp.errors import ConfigError
from edgecomp.evaluate.runtimes.runtime import Predictor
from edgecomp.evaluate.uncertainty import median_interval


@dataclass(frozen=True)
class LatencyProtocol:
    images: int = 1000
    runs: int = 10
    warmup: int = 1
    # Two artifacts compared are timed in this many alternating rounds, `runs` timed passes of each spread over them
    # (at least one a round: edgecomp.evaluate.paired_latency); a single artifact's timing is one round.
    rounds: int = 20

    def __post_init__(self) -> None:
        if self.images < 1 or self.runs < 2 or self.warmup < 0 or self.rounds < 2:
            raise ConfigError(
                f"latency needs images >= 1, runs >= 2, warmup >= 0 and rounds >= 2; got images={self.images}, "
                f"runs={self.runs}, warmup={self.warmup}, rounds={self.rounds}"
            )

    @property
    def runs_per_round(self) -> int:
        """The timed passes of each side in one round of a paired timing: `runs` spread over the rounds, at least 1."""
        return max(1, math.ceil(self.runs / self.rounds))


class LatencySummary(TypedDict):
    """The statistics of timed passes, ms per image (`latency_stats`)."""

    mean: float
    std: float  # sample standard deviation (0 for one pass)
    median: float  # what every comparison uses
    p90: float
    ci95: list[float] | None  # the median's distribution-free 95 % interval; null below the 6 passes it needs


class LatencyStats(LatencySummary):
    """A record's `latency_ms` (and its baseline's): the statistics of the timed passes, ms per image, and how they
    were timed."""

    runs: int  # timed passes (a paired timing's, pooled over its rounds)
    warmup: int
    images: int
    batch_size: int
    passes_ms_per_image: list[float]


class PairedLatencyStats(LatencyStats):
    """The latency of one side of a paired timing (edgecomp.evaluate.paired_latency): its passes of every round."""

    rounds: int  # alternating rounds


def latency_stats(ms_per_image: list[float]) -> LatencySummary:
    """mean, sample standard deviation, median, 90th percentile of per-pass ms per image, and the 95 % interval of
    the median (`ci95`, null below the 6 passes it needs)."""
    values = np.asarray(ms_per_image, dtype=np.float64)
    interval = median_interval(ms_per_image)
    return LatencySummary(
        mean=float(values.mean()),
        std=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        median=float(np.median(values)),
        p90=float(np.percentile(values, 90)),
        ci95=None if interval is None else list(interval),
    )


def latency_record(timed: list[float], warmup: int, images: int, batch_size: int) -> LatencyStats:
    """The record's `latency_ms` of the timed passes `timed` (ms per image), with how they were timed."""
    return LatencyStats(
        **latency_stats(timed),
        runs=len(timed),
        warmup=warmup,
        images=images,
        batch_size=batch_size,
        passes_ms_per_image=timed,
    )


def time_passes(
    predictor: Predictor, batches: list[Any], count: int, passes: int, desc: str = "latency"
) -> list[float]:
    """ms per image of each of `passes` passes over prepared `batches` (`count` images in all), on the clock of the
    machine that runs them (Predictor.time_passes)."""
    return predictor.time_passes(batches, count, passes, desc)


def prepared_batches(predictor: Predictor, images: torch.Tensor, batch_size: int) -> list[Any]:
    """`images` (N, 3, H, W) in batches as the predictor takes them, on its device: the untimed part."""
    batches = [predictor.prepare(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)]
    predictor.synchronize()
    return batches


def measure_latency(
    predictor: Predictor, images: torch.Tensor, batch_size: int, protocol: LatencyProtocol, desc: str = "latency"
) -> LatencyStats:
    """Time `protocol.warmup + protocol.runs` passes over `images` (N, 3, H, W) in batches of `batch_size`."""
    count = images.shape[0]
    # Inputs are moved to the device before the clock starts: the network forward is what is timed.
    batches = prepared_batches(predictor, images, batch_size)
    timed = time_passes(predictor, batches, count, protocol.warmup + protocol.runs, desc)[protocol.warmup :]
    return latency_record(timed, protocol.warmup, count, batch_size)
