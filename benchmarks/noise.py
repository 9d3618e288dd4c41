"""Do the latency verdicts hold on this host? A/A and A/B comparisons through edgecomp's paired timing.

    python -m benchmarks.noise                                # 20 A/A + 20 A/B, mobilenetv3_large_100 at 224/208 px
    python -m benchmarks.noise --comparisons 10 --rounds 5    # another protocol

Every comparison is what compress.py makes (edgecomp.evaluate.paired_latency.time_alternately: the latency
protocol's `runs` timed passes of each side spread over `rounds` alternating rounds, one ONNX Runtime session at a
time, one ratio per round, a t interval on the log ratios):

- A/A: one FP32 ONNX file against itself. Any `faster` or `slower` verdict is a false one; at 95 % about 1 in 20
  is expected from chance alone, more means the host's noise is not what the interval assumes.
- A/B: the same network exported at two input sizes whose FLOPs differ by 10-15 % (224 and 208 px: 10.7 % fewer),
  so B is truly faster by about that much (about 9 % as measured). A `faster` verdict is a detection.

Printed: the share of false A/A verdicts, the share of A/B detections, the median ratio and the median interval
width of each kind, with the host and the protocol. Random-init weights: latency does not depend on the values.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from edgecomp.evaluate.device import TargetDevice
from edgecomp.evaluate.flops import count_flops
from edgecomp.evaluate.hardware import cpu_description
from edgecomp.evaluate.latency import LatencyProtocol
from edgecomp.evaluate.onnx_export import export_onnx
from edgecomp.evaluate.paired_latency import Side, time_alternately
from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime
from edgecomp.evaluate.uncertainty import FASTER, SAME, RatioInterval
from edgecomp.models.timm_classifier import create_classifier


def compare(a: Path, b: Path, sizes: tuple[int, int], device: TargetDevice, protocol: LatencyProtocol) -> RatioInterval:
    """B's ms over A's by the paired timing, each file timed on fixed images of its own input size (the same seed:
    the same scenes at two sizes)."""
    runtime = OnnxRuntime()
    sides = [Side(runtime, a, "A"), Side(runtime, b, "B")]
    images = [torch.rand(protocol.images, 3, s, s, generator=torch.Generator().manual_seed(0)) for s in sizes]
    return time_alternately(sides, images, device, protocol).ratio(1, 0)


def summarise(name: str, results: list[RatioInterval]) -> dict[str, float]:
    widths = [high - low for low, high in (r.ci95 for r in results)]
    return {
        "kind": name,
        "n": len(results),
        "faster": sum(r.verdict == FASTER for r in results),
        "same": sum(r.verdict == SAME for r in results),
        "slower": sum(r.verdict not in (FASTER, SAME) for r in results),
        "median_ratio": statistics.median(r.ratio for r in results),
        "median_width": statistics.median(widths),
        "max_width": max(widths),
    }


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenetv3_large_100", help="a timm classifier (random init)")
    parser.add_argument("--sizes", type=int, nargs=2, default=(224, 208), help="A's and B's input sizes")
    parser.add_argument("--comparisons", type=int, default=20, help="A/A and A/B comparisons of each kind")
    parser.add_argument("--images", type=int, default=20, help="N: the fixed images timed in each pass")
    defaults = LatencyProtocol()  # edgecomp's own protocol: what compress.py's comparisons use
    parser.add_argument("--runs", type=int, default=defaults.runs, help="timed passes per side, over the rounds")
    parser.add_argument("--warmup", type=int, default=defaults.warmup, help="discarded passes per side and round")
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    protocol = LatencyProtocol(images=args.images, runs=args.runs, warmup=args.warmup, rounds=args.rounds)
    device = TargetDevice("cpu", "cpu", OnnxRuntime(), "fp32", batch_size=1, threads=args.threads)
    torch.manual_seed(0)
    model = create_classifier(args.model, num_classes=10).eval()
    size_a, size_b = args.sizes
    flops_a, flops_b = (count_flops(model, (1, 3, s, s)) for s in (size_a, size_b))
    print(f"host: {cpu_description()}; {args.threads} threads, ONNX Runtime FP32, batch 1", flush=True)
    print(
        f"protocol: {protocol.images} images, {protocol.runs} timed passes per side in {protocol.rounds} rounds "
        f"({protocol.runs_per_round} per round, + {protocol.warmup} warm-up each)",
        flush=True,
    )
    print(f"A: {args.model} at {size_a} px; B: at {size_b} px, FLOPs ratio B/A {flops_b / flops_a:.3f}", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgecomp-noise-") as folder:
        a = export_onnx(model, Path(folder) / f"a-{size_a}.onnx", size_a)
        b = export_onnx(model, Path(folder) / f"b-{size_b}.onnx", size_b)
        same, different = [], []
        # The two kinds interleaved, so that a slow stretch of the host falls on both.
        for index in range(args.comparisons):
            same.append(compare(a, a, (size_a, size_a), device, protocol))
            different.append(compare(a, b, (size_a, size_b), device, protocol))
            print(
                f"  {index + 1:>2}/{args.comparisons}  A/A {same[-1].ratio:.3f} [{same[-1].ci95[0]:.3f}, "
                f"{same[-1].ci95[1]:.3f}] {same[-1].verdict:<17}  A/B {different[-1].ratio:.3f} "
                f"[{different[-1].ci95[0]:.3f}, {different[-1].ci95[1]:.3f}] {different[-1].verdict}",
                flush=True,
            )
    rows = [summarise("A/A", same), summarise("A/B", different)]
    elapsed = time.perf_counter() - start
    print(f"\n{'kind':<5}{'n':>4}{'faster':>8}{'same':>6}{'slower':>8}{'median ratio':>14}{'median CI width':>17}"
          f"{'max CI width':>14}")  # fmt: skip
    for row in rows:
        print(
            f"{row['kind']:<5}{row['n']:>4}{row['faster']:>8}{row['same']:>6}{row['slower']:>8}"
            f"{row['median_ratio']:>14.3f}{row['median_width']:>17.3f}{row['max_width']:>14.3f}"
        )
    false = rows[0]["faster"] + rows[0]["slower"]
    print(
        f"\nA/A false verdicts: {false}/{rows[0]['n']} (target at most {args.comparisons // 10}); "
        f"A/B detected as faster: {rows[1]['faster']}/{rows[1]['n']} (target at least {args.comparisons - args.comparisons // 10}); "
        f"{elapsed:.0f} s",
        flush=True,
    )
    return rows


if __name__ == "__main__":
    main()
