"""INT8 against FP32 on each CPU runtime, measured in one run: where an INT8 speed-up on this CPU comes from.

    python -m benchmarks.int8_runtimes                                    # mobilenetv3_large_100, efficientnet_b1, resnet50
    python -m benchmarks.int8_runtimes --models resnet50 --runtimes ort ort_no_layout

Per model (random-init weights: latency does not depend on the values, and the INT8 graphs are calibrated on random
images, so accuracy is not measured here; `benchmarks.ptq_int8` measures it on trained models), every runtime times
the same fixed images, with the same thread count, in the same process; each runtime's FP32 and INT8 sides are timed
against each other in alternating rounds (edgecomp's paired timing), so each speed-up comes with its 95 % interval
and verdict:

- `ort`: ONNX Runtime, FP32 file vs edgecomp's `ptq_int8` file (QDQ, per-channel), all graph optimisations. This is
  the comparison `compress.py compressor=ptq_int8` records.
- `ort_no_layout`: the same two files with ONNX Runtime's layout optimisations off (`ORT_ENABLE_EXTENDED`). FP32 then
  loses its NCHWc convolutions and fused activations while INT8 keeps most of its speed, so the ratio grows: the usual
  source of quoted INT8 speed-ups on CPUs. It is printed to be recognised, not to be claimed.
- `inductor`: torchao's PT2E quantization (X86InductorQuantizer, per-channel weights, calibrated activations) against
  the FP32 network, both compiled by `torch.compile` (Inductor, weights frozen); only where torchao is installed
  (`pip install torchao -c constraints.txt`), and it takes a minute or more of compilation per network.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path

import timm
import torch

from benchmarks.timing import add_latency_arguments, median_ms, protocol_description, speedup_fields, time_sides
from edgecomp.compress.quantization.ptq_int8 import Int8Quantization
from edgecomp.evaluate.hardware import cpu_description
from edgecomp.evaluate.onnx_export import export_onnx
from edgecomp.evaluate.paired_latency import Side
from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime
from edgecomp.evaluate.runtimes.torch_eager import TorchEagerPredictor, TorchEagerRuntime

RUNTIMES = ("ort", "ort_no_layout", "inductor")
CALIBRATION_IMAGES = 32


def _onnx_pair(model: torch.nn.Module, folder: Path, image_size: int) -> tuple[Path, Path]:
    """The FP32 export and edgecomp's default INT8 file (conf/compressor/ptq_int8.yaml) made from it."""
    fp32 = export_onnx(model, folder / "fp32.onnx", image_size)
    int8 = folder / "int8.onnx"
    Int8Quantization("ptq_int8").quantize_file(fp32, int8, torch.randn(CALIBRATION_IMAGES, 3, image_size, image_size))
    return fp32, int8


def _inductor_pair(model: torch.nn.Module, image_size: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The FP32 network and its torchao PT2E INT8 version, each compiled by Inductor with frozen weights."""
    import torch._inductor.config as inductor_config
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    # Freezing lets Inductor pre-pack the quantized weights for oneDNN; without it INT8 is slower than FP32.
    inductor_config.freezing = True
    example = torch.randn(1, 3, image_size, image_size)
    with torch.no_grad():
        exported = torch.export.export(model, (example,)).module()
        quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(exported, quantizer)
        for image in torch.randn(CALIBRATION_IMAGES, 1, 3, image_size, image_size):
            prepared(image)
        return torch.compile(model), torch.compile(convert_pt2e(prepared))


class _CompiledRuntime(TorchEagerRuntime):
    """Torch on the CPU, running an already compiled module as it is (TorchEagerRuntime would deep-copy it)."""

    name = "inductor"

    def load(self, artifact: torch.nn.Module, device) -> TorchEagerPredictor:
        return TorchEagerPredictor(artifact, device.torch_device, device.dtype)


def compare(name: str, runtimes: list[str], args: argparse.Namespace) -> list[dict]:
    torch.manual_seed(0)
    images = torch.rand(args.images, 3, args.image_size, args.image_size)
    model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        fp32, int8 = _onnx_pair(model, Path(folder), args.image_size)
        for runtime_name in runtimes:
            if runtime_name == "inductor":
                artifacts, runtime = _inductor_pair(model, args.image_size), _CompiledRuntime()
            else:
                artifacts, runtime = (fp32, int8), OnnxRuntime(layout_optimizations=runtime_name == "ort")
            sides = [
                Side(runtime, artifact, f"{name} {runtime_name} {precision}")
                for artifact, precision in zip(artifacts, ("fp32", "int8"), strict=True)
            ]
            timing = time_sides(sides, images, args)
            rows.append(
                {
                    "model": name,
                    "runtime": runtime_name,
                    "fp32_ms": median_ms(timing, 0),
                    "int8_ms": median_ms(timing, 1),
                    **speedup_fields(timing.ratio(1, 0)),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilenetv3_large_100", "efficientnet_b1", "resnet50"])
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    parser.add_argument("--image-size", type=int, default=224)
    add_latency_arguments(parser, images=50, runs=10)
    args = parser.parse_args(argv)
    runtimes = list(args.runtimes)
    if "inductor" in runtimes and importlib.util.find_spec("torchao") is None:
        print("inductor: skipped, torchao is not installed (pip install torchao -c constraints.txt)")
        runtimes.remove("inductor")
    rows = [row for name in args.models for row in compare(name, runtimes, args)]
    print(f"\n{cpu_description()}, {args.image_size}px, {protocol_description(args)}; speed-up [95 % interval] verdict")
    print(f"{'model':<24}{'runtime':<16}{'FP32 ms':>9}{'INT8 ms':>9}  INT8 speed-up")
    for row in rows:
        print(f"{row['model']:<24}{row['runtime']:<16}{row['fp32_ms']:>9.2f}{row['int8_ms']:>9.2f}  {row['cell']}")
    return rows


if __name__ == "__main__":
    main()
