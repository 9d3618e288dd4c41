"""Which channel counts the target's runtime runs fast, measured: the latency of a small conv block over a range of
channel counts, and the divisor whose multiples are its fast points (a device profile's `channel_divisor`).

    python -m benchmarks.channel_divisor                                  # device=cpu (ONNX Runtime), 40..72 channels
    python -m benchmarks.channel_divisor --device cpu_torch --channels 32 96 --step 2

The block is what a pruned layer is in a CNN like YOLOv8n: a 3x3 convolution from `--width` channels to C, BatchNorm,
SiLU, and a 3x3 convolution back to `--width` (C is the count FastNAS chooses), on a `--size` x `--size` feature map
(40: YOLOv8n's stride-8 map at 320 px), after a 1x1 convolution from 3 channels to `--width` (what runs is a deployed
network taking images). Each C is deployed by the device profile's runtime (ONNX Runtime: an FP32 ONNX
file, every graph optimisation) and timed with the latency protocol at the profile's threads and batch size; the
channel counts are timed in `--rounds` rounds, each a fresh session, and each count's figure is the median of its
rounds (a round that the machine's other work slowed does not decide it).

Why it matters: ONNX Runtime's CPU convolutions run in NCHWc blocks of 8 floats (AVX2) or 16 (AVX-512), and a
convolution whose channel count is no multiple of the block is left in the plain NCHW layout, a slower kernel; oneDNN
(eager PyTorch) pads to its blocks. A channel count between two multiples then costs as much as the next multiple, or
more. The divisor printed is the largest of `--divisors` for which (at least three quarters of) the channel counts between
two of its multiples run no faster than the next multiple (within `--tolerance`): rounding pruned channel counts to
its multiples loses nothing the runtime would have turned into speed. Time it on a quiet machine: other work slows
some counts and not others.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

from edgecomp.evaluate.artifact import ExportedModel
from edgecomp.evaluate.device import TargetDevice
from edgecomp.evaluate.latency import LatencyProtocol, measure_latency

CONF = Path(__file__).resolve().parents[1] / "conf"


def conv_block(width: int, channels: int) -> nn.Module:
    """3x3 conv width -> channels, BatchNorm, SiLU, 3x3 conv channels -> width: both convolutions scale with
    `channels`, as a pruned layer and its consumer do. A 1x1 conv from the image's 3 channels to `width` comes first
    (a deployed network takes images), a constant ~1/200 of the block's work."""
    return nn.Sequential(
        nn.Conv2d(3, width, 1),
        nn.Conv2d(width, channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.SiLU(),
        nn.Conv2d(channels, width, 3, padding=1, bias=False),
    ).eval()


def device_profile(name: str, threads: int | None) -> TargetDevice:
    """The device profile conf/device/<name>.yaml, built as a run builds it (`threads`: override its thread count)."""
    from hydra import compose, initialize_config_dir  # here: time_channel_counts needs no Hydra

    from edgecomp.config import build

    overrides = [f"device={name}"] + ([f"device.threads={threads}"] if threads else [])
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="channel_divisor"):
        cfg = compose(config_name="train", overrides=overrides)
    return build(cfg.device)


def time_channel_counts(
    device: TargetDevice, channels: list[int], width: int, size: int, protocol: LatencyProtocol, rounds: int
) -> dict[int, float]:
    """Median ms per image of the block at each channel count, over `rounds` rounds of every count in turn."""
    torch.manual_seed(0)
    images = torch.rand(protocol.images, 3, size, size)
    runtime = device.runtime
    timed: dict[int, list[float]] = {c: [] for c in channels}
    with tempfile.TemporaryDirectory() as folder:
        artifacts = {}
        for c in channels:
            deployed = runtime.deploy(conv_block(width, c), size, Path(folder))
            artifacts[c] = deployed.path if isinstance(deployed, ExportedModel) else deployed
        for round_ in range(rounds):
            for c in channels:
                with device.pinned_threads():
                    # A session per measurement, dropped after it: an idle session's spinning threads would take the
                    # cores from the next one.
                    predictor = runtime.load(artifacts[c], device)
                    desc = f"round {round_ + 1}, {c} channels"
                    timed[c].append(measure_latency(predictor, images, device.batch_size, protocol, desc)["median"])
                    del predictor
    return {c: statistics.median(values) for c, values in timed.items()}


def next_multiple(channels: int, divisor: int) -> int:
    return -(-channels // divisor) * divisor


def no_faster_share(ms: dict[int, float], divisor: int, tolerance: float) -> float | None:
    """Of the timed channel counts that are no multiple of `divisor` (and whose next multiple was timed), the share
    that runs no faster than that next multiple (ms(C) >= (1 - tolerance) x ms(next multiple)). 1: every count
    between two multiples costs as much as the next one, so the multiples are the fast points."""
    pairs = [(c, next_multiple(c, divisor)) for c in ms if c % divisor and next_multiple(c, divisor) in ms]
    if not pairs:
        return None
    return sum(ms[c] >= (1 - tolerance) * ms[up] for c, up in pairs) / len(pairs)


def fast_divisor(ms: dict[int, float], divisors: list[int], tolerance: float, quorum: float = 0.75) -> int:
    """The largest divisor whose multiples are the fast points: at least `quorum` of the channel counts between its
    multiples run no faster than the next multiple (a quorum, not all: one count slowed by the machine's other work
    must not decide). 1 if none is."""
    for divisor in sorted(divisors, reverse=True):
        share = no_faster_share(ms, divisor, tolerance)
        if share is not None and share >= quorum:
            return divisor
    return 1


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="a device profile, conf/device/<name>.yaml")
    parser.add_argument("--channels", nargs=2, type=int, default=[40, 72], metavar=("FIRST", "LAST"))
    parser.add_argument("--step", type=int, default=1)
    parser.add_argument("--width", type=int, default=64, help="the channels before and after the block")
    parser.add_argument("--size", type=int, default=40, help="the feature map's height and width")
    parser.add_argument("--divisors", nargs="+", type=int, default=[2, 4, 8, 16, 32])
    parser.add_argument("--tolerance", type=float, default=0.03, help="timing noise allowed, a share of the ms")
    parser.add_argument("--images", type=int, default=20, help="N: the fixed inputs timed in each pass")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="default: the device profile's")
    args = parser.parse_args(argv)
    device = device_profile(args.device, args.threads)
    protocol = LatencyProtocol(images=args.images, runs=args.runs, warmup=args.warmup)
    channels = list(range(args.channels[0], args.channels[1] + 1, args.step))
    ms = time_channel_counts(device, channels, args.width, args.size, protocol, args.rounds)
    divisor = fast_divisor(ms, args.divisors, args.tolerance)

    print(
        f"\ndevice={args.device}: {device.hardware}, {device.runtime.name}, {device.threads} threads, batch "
        f"{device.batch_size}; 3x3 conv {args.width}->C, BN, SiLU, 3x3 conv C->{args.width} on {args.size}x{args.size}"
        f"; median ms per input over {args.rounds} rounds of {args.runs} runs of {args.images} inputs"
    )
    print(f"{'C':>4}{'ms':>9}{'ms/C x1000':>12}  multiple of")
    for c, value in ms.items():
        multiples = ",".join(str(d) for d in args.divisors if c % d == 0)
        print(f"{c:>4}{value:>9.3f}{1000 * value / c:>12.2f}  {multiples}")
    print(
        f"divisor  share of the C between its multiples that run no faster than the next multiple (-{args.tolerance:.0%}"
        "); the fast points' divisor: the largest with >= 75%"
    )
    shares = {d: no_faster_share(ms, d, args.tolerance) for d in args.divisors}
    for d, share in shares.items():
        print(f"{d:>7}  {'-' if share is None else f'{share:.0%}'}")
    print(f"fast points: multiples of {divisor} (channel_divisor: {divisor})")
    return {"ms": ms, "shares": shares, "divisor": divisor, "hardware": device.hardware}


if __name__ == "__main__":
    main()
