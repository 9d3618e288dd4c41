"""CPU runtimes compared in one run: torch eager vs ONNX Runtime (FP32) per model, with the latency protocol.

    python -m benchmarks.cpu_runtimes                      # mobilenetv3_small_100, mobilenetv3_large_100 at 224 px
    python -m benchmarks.cpu_runtimes --models efficientnet_b1 --images 200 --threads 4

Both runtimes time the same fixed images, with the same thread count, in the same process, so the ratio is
measured, not compared across runs. Random-init weights: latency does not depend on the values.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import timm
import torch

from benchmarks.timing import add_latency_arguments, latency_protocol, median_ms
from edgecomp.evaluate.hardware import cpu_description
from edgecomp.evaluate.latency import LatencyProtocol
from edgecomp.evaluate.onnx_export import export_onnx
from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime
from edgecomp.evaluate.runtimes.torch_eager import TorchEagerRuntime


def compare(model_name: str, image_size: int, protocol: LatencyProtocol, threads: int, num_classes: int) -> dict:
    """Median ms/image of torch eager and ONNX Runtime FP32 for one model, and their ratio."""
    torch.manual_seed(0)
    images = torch.rand(protocol.images, 3, image_size, image_size)
    model = timm.create_model(model_name, pretrained=False, num_classes=num_classes).eval()
    with tempfile.TemporaryDirectory() as folder:
        onnx_file = export_onnx(model, Path(folder) / "model.onnx", image_size)
        medians = {
            runtime.name: median_ms(runtime, artifact, images, protocol, threads, runtime.name)
            for runtime, artifact in ((TorchEagerRuntime(), model), (OnnxRuntime(), onnx_file))
        }
    return {
        "model": model_name,
        "torch_ms": medians["torch"],
        "onnxruntime_ms": medians["onnxruntime"],
        "speedup": medians["torch"] / medians["onnxruntime"],
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilenetv3_small_100", "mobilenetv3_large_100"])
    parser.add_argument("--image-size", type=int, default=224)
    add_latency_arguments(parser, images=100, runs=10)
    parser.add_argument("--num-classes", type=int, default=102)
    args = parser.parse_args(argv)
    protocol = latency_protocol(args)
    print(
        f"{cpu_description()}, {args.threads} threads, batch 1, {args.image_size}px, median ms/image over "
        f"{args.runs} runs of {args.images} images (+{args.warmup} warm-up)"
    )
    print(f"{'model':<28}{'torch eager':>14}{'ORT FP32':>12}{'ORT speed-up':>15}")
    rows = []
    for name in args.models:
        row = compare(name, args.image_size, protocol, args.threads, args.num_classes)
        print(f"{name:<28}{row['torch_ms']:>14.2f}{row['onnxruntime_ms']:>12.2f}{row['speedup']:>14.2f}x")
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
