"""What the speed benchmarks share: the latency protocol's command-line options, and one file or module timed on
this CPU with it."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from edgecomp.evaluate.device import TargetDevice
from edgecomp.evaluate.latency import LatencyProtocol, measure_latency


def add_latency_arguments(parser: argparse.ArgumentParser, images: int, runs: int) -> None:
    """--images, --runs, --warmup and --threads, with this benchmark's defaults for the first two."""
    parser.add_argument("--images", type=int, default=images, help="N: the fixed images timed in each pass")
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)


def latency_protocol(args: argparse.Namespace) -> LatencyProtocol:
    return LatencyProtocol(images=args.images, runs=args.runs, warmup=args.warmup)


def median_ms(runtime, artifact: Any, images: torch.Tensor, protocol: LatencyProtocol, threads: int, desc: str) -> float:
    """The median ms per image of `artifact` run by `runtime` on this CPU (FP32, batch 1, `threads` threads). The
    predictor is dropped before returning, so an ONNX Runtime session's threads stop before the next one is timed."""
    device = TargetDevice("cpu", "cpu", runtime, "fp32", batch_size=1, threads=threads)
    with device.pinned_threads():
        predictor = runtime.load(artifact, device)
        median = measure_latency(predictor, images, 1, protocol, desc=desc)["median"]
    del predictor
    return median
