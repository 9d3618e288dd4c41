"""Two (or more) artifacts timed against each other: alternating rounds, one ratio per round, an interval.

On a shared 2-core host the same file reads up to ~40 % slower for a while after other work, so two medians timed
one after the other minutes apart compare the host's two moods as much as the two files. Here the sides are timed
in `protocol.rounds` rounds; in each round every side is timed once (`protocol.warmup` discarded passes, then
`protocol.runs_per_round` timed ones, their median the side's value for the round), in an order that reverses from
one round to the next (A B, B A, A B, ...), so that a slow drift of the host weighs on both sides alike. A side's
ratio to another is taken per round, and the rounds' ratios give the geometric-mean ratio, its 95 % interval and a
verdict (edgecomp.evaluate.uncertainty.ratio_interval): a burst that slows one round widens the interval rather
than deciding the ratio.

Each side runs in a session of its own, opened for its turn and closed after it (`Runtime.load`, then dropped), so
only one session exists at a time: an idle ONNX Runtime session's spinning threads cannot take the cores from the
one being timed, and each side runs with the settings it is deployed with (spinning on), as a single timing does.
Opening a session is not timed.

`alternate` holds the schedule and takes any timer, so the verdict logic is tested on a simulated clock.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from edgecomp.evaluate.latency import LatencyProtocol, PairedLatencyStats, latency_stats, prepared_batches, time_passes
from edgecomp.evaluate.uncertainty import RatioInterval, ratio_interval

# A side's timer: given the round's index, the ms per image of its timed passes in that round.
Timer = Callable[[int], list[float]]


@dataclass(frozen=True)
class Side:
    """One artifact to time: what loads it (a Runtime) and what it loads (a file's path, or a module)."""

    runtime: Any
    artifact: Any
    name: str = ""


@dataclass(frozen=True)
class PairedTiming:
    """Per side, per round, the timed passes (ms per image), as `alternate` made them."""

    passes: list[list[list[float]]]
    warmup: int
    images: int
    batch_size: int

    @property
    def rounds(self) -> int:
        return len(self.passes[0])

    def round_medians(self, side: int) -> list[float]:
        return [statistics.median(passes) for passes in self.passes[side]]

    def ratio(self, side: int, reference: int) -> RatioInterval:
        """`side`'s ms over `reference`'s, per round, as a ratio with its interval (< 1: `side` is faster)."""
        ratios = [a / b for a, b in zip(self.round_medians(side), self.round_medians(reference), strict=True)]
        return ratio_interval(ratios)

    def latency(self, side: int) -> PairedLatencyStats:
        """`side`'s latency as a record holds it: the statistics over its timed passes of every round, pooled."""
        pooled = [ms for passes in self.passes[side] for ms in passes]
        # latency_record's fields with the rounds before the passes, as records have them (a TypedDict's required key
        # cannot be popped to move it, so the fields are given in order).
        return PairedLatencyStats(
            **latency_stats(pooled),
            runs=len(pooled),
            warmup=self.warmup,
            images=self.images,
            batch_size=self.batch_size,
            rounds=self.rounds,
            passes_ms_per_image=pooled,
        )


def round_order(sides: int, round_index: int) -> list[int]:
    """The order the sides are timed in, round `round_index`: as given in even rounds, reversed in odd ones."""
    order = list(range(sides))
    return order if round_index % 2 == 0 else order[::-1]


def alternate(timers: Sequence[Timer], rounds: int) -> list[list[list[float]]]:
    """Run `rounds` rounds of `timers` in alternating order; per timer, per round, what it returned."""
    if len(timers) < 2 or rounds < 2:
        raise ValueError(f"a paired timing needs at least 2 sides and 2 rounds, got {len(timers)} and {rounds}")
    passes: list[list[list[float]]] = [[] for _ in timers]
    for index in tqdm(range(rounds), desc="paired latency", unit="round", disable=None, leave=False):
        for side in round_order(len(timers), index):
            passes[side].append(list(timers[side](index)))
    return passes


def session_timer(side: Side, images: torch.Tensor, device, protocol: LatencyProtocol) -> Timer:
    """A timer that opens `side`'s session on `device`, times `protocol.warmup` + `runs_per_round` passes over
    `images` at the device's threads and batch size, closes it and returns the timed passes."""

    def time_round(_: int) -> list[float]:
        with device.pinned_threads():
            predictor = side.runtime.load(side.artifact, device)
            batches = prepared_batches(predictor, images, device.batch_size)
            passes = protocol.warmup + protocol.runs_per_round
            timed = time_passes(predictor, batches, images.shape[0], passes, f"latency {side.name}".strip())
        del predictor, batches  # the session's threads stop before the next side is timed
        return timed[protocol.warmup :]

    return time_round


def time_alternately(
    sides: Sequence[Side], images: torch.Tensor | Sequence[torch.Tensor], device, protocol: LatencyProtocol
) -> PairedTiming:
    """Time `sides` on `device` in `protocol.rounds` alternating rounds (see the module docstring), each on the
    fixed `images` (N, 3, H, W), or on its own tensor of `images` where they are given per side (one network at two
    input sizes)."""
    per_side = list(images) if not isinstance(images, torch.Tensor) else [images] * len(sides)
    if len(per_side) != len(sides) or len({len(batch) for batch in per_side}) != 1:
        raise ValueError(f"images: one tensor, or one per side with as many images each; got {len(per_side)}")
    timers = [session_timer(side, batch, device, protocol) for side, batch in zip(sides, per_side, strict=True)]
    return PairedTiming(
        passes=alternate(timers, protocol.rounds),
        warmup=protocol.warmup,
        images=int(per_side[0].shape[0]),
        batch_size=device.batch_size,
    )
