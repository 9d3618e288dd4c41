"""CPU runtimes compared in one run: torch eager vs ONNX Runtime (FP32) per model, with the latency protocol.

    python -m benchmarks.cpu_runtimes                      # mobilenetv3_small_100, mobilenetv3_large_100 at 224 px
    python -m benchmarks.cpu_runtimes --models efficientnet_b1 --images 200 --threads 4

Both runtimes time the same fixed images, with the same thread count, in the same process, against each other in
alternating rounds (edgecomp's paired timing: benchmarks.timing.time_sides), so the ratio is measured, with its 95 %
interval and verdict, not compared across runs. Random-init weights: latency does not depend on the values.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import timm
import torch

from benchmarks.timing import add_latency_arguments, median_ms, protocol_description, speedup_fields, time_sides
from edgecomp.evaluate.hardware import cpu_description
from edgecomp.evaluate.onnx_export import export_onnx
from edgecomp.evaluate.paired_latency import Side
from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime
from edgecomp.evaluate.runtimes.torch_eager import TorchEagerRuntime


def compare(model_name: str, args: argparse.Namespace) -> dict:
    """Median ms/image of torch eager and ONNX Runtime FP32 for one model, timed against each other, and ONNX
    Runtime's speed-up with its interval."""
    torch.manual_seed(0)
    images = torch.rand(args.images, 3, args.image_size, args.image_size)
    model = timm.create_model(model_name, pretrained=False, num_classes=args.num_classes).eval()
    with tempfile.TemporaryDirectory() as folder:
        onnx_file = export_onnx(model, Path(folder) / "model.onnx", args.image_size)
        sides = [Side(TorchEagerRuntime(), model, "torch"), Side(OnnxRuntime(), onnx_file, "onnxruntime")]
        timing = time_sides(sides, images, args)
    return {
        "model": model_name,
        "torch_ms": median_ms(timing, 0),
        "onnxruntime_ms": median_ms(timing, 1),
        **speedup_fields(timing.ratio(1, 0)),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilenetv3_small_100", "mobilenetv3_large_100"])
    parser.add_argument("--image-size", type=int, default=224)
    add_latency_arguments(parser, images=100, runs=10)
    parser.add_argument("--num-classes", type=int, default=102)
    args = parser.parse_args(argv)
    print(f"{cpu_description()}, {args.image_size}px, {protocol_description(args)}; speed-up [95 % interval] verdict")
    print(f"{'model':<28}{'torch eager':>14}{'ORT FP32':>12}  ORT speed-up")
    rows = []
    for name in args.models:
        row = compare(name, args)
        print(f"{name:<28}{row['torch_ms']:>14.2f}{row['onnxruntime_ms']:>12.2f}  {row['cell']}")
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
