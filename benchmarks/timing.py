"""What the speed benchmarks share: the latency protocol's command-line options, the sides of one comparison timed
against each other on this CPU (edgecomp's paired alternating rounds), and a speed-up printed with its interval."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from edgecomp.evaluate.device import TargetDevice
from edgecomp.evaluate.latency import LatencyProtocol
from edgecomp.evaluate.paired_latency import PairedTiming, Side, time_alternately
from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime
from edgecomp.evaluate.uncertainty import RatioInterval


def add_latency_arguments(parser: argparse.ArgumentParser, images: int, runs: int) -> None:
    """--images, --runs, --warmup, --rounds and --threads, with this benchmark's defaults for the first two."""
    parser.add_argument("--images", type=int, default=images, help="N: the fixed images timed in each pass")
    parser.add_argument(
        "--runs", type=int, default=runs, help="timed passes per side, spread over the rounds (at least one a round)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="discarded passes per side and round")
    parser.add_argument(
        "--rounds", type=int, default=LatencyProtocol().rounds, help="alternating rounds of every paired timing"
    )
    parser.add_argument("--threads", type=int, default=2)


def latency_protocol(args: argparse.Namespace) -> LatencyProtocol:
    return LatencyProtocol(images=args.images, runs=args.runs, warmup=args.warmup, rounds=args.rounds)


def protocol_description(args: argparse.Namespace) -> str:
    """What each side's median and the intervals are taken over, for a benchmark's header line."""
    protocol = latency_protocol(args)
    return (
        f"{args.threads} threads, batch 1; median ms/image over {protocol.rounds * protocol.runs_per_round} timed "
        f"passes of {protocol.images} images per side in {protocol.rounds} alternating rounds (+{protocol.warmup} "
        "warm-up each)"
    )


def time_sides(sides: Sequence[Side], images: torch.Tensor, args: argparse.Namespace) -> PairedTiming:
    """`sides` timed against each other on this CPU (batch 1, `args.threads` threads) in `args.rounds` alternating
    rounds, one session at a time: compare them with `PairedTiming.ratio`, each with its interval."""
    device = TargetDevice("cpu", "cpu", OnnxRuntime(), "fp32", batch_size=1, threads=args.threads)
    return time_alternately(sides, images, device, latency_protocol(args))


def median_ms(timing: PairedTiming, side: int) -> float:
    """`side`'s median ms per image over its timed passes of every round."""
    return timing.latency(side)["median"]


def speedup(ratio: RatioInterval) -> tuple[float, tuple[float, float]]:
    """A side's speed-up over its reference (reference ms / side ms) and its interval, from the side's ratio."""
    return 1 / ratio.ratio, (1 / ratio.ci95[1], 1 / ratio.ci95[0])


def speedup_fields(ratio: RatioInterval, prefix: str = "") -> dict:
    """A benchmark row's speed-up columns from a side's ratio to its reference: the speed-up, its interval, the
    verdict and the printed cell, each key prefixed with `prefix`."""
    value, interval = speedup(ratio)
    fields = {"speedup": value, "speedup_ci95": interval, "verdict": ratio.verdict, "cell": speedup_cell(ratio)}
    return {f"{prefix}{key}": field for key, field in fields.items()}


def speedup_cell(ratio: RatioInterval) -> str:
    """`1.83x [1.75, 1.90] faster`: the speed-up, its 95 % interval and the verdict of the side's ratio."""
    value, (low, high) = speedup(ratio)
    return f"{value:.2f}x [{low:.2f}, {high:.2f}] {ratio.verdict}"
