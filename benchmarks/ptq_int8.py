"""INT8 post-training quantization on the CPU target, measured in one run: speed-up over the FP32 baseline on the
same runtime (ONNX Runtime), and top-1 drop, per model and per quantization setting.

    python -m benchmarks.ptq_int8                                  # mobilenetv3_large_100, efficientnet_b1
    python -m benchmarks.ptq_int8 --models resnet50 --image-size 160 --epochs 3 --variants default all_but_depthwise

Each model is trained once on the generated `synthetic_cls` set at `--image-size` for `--epochs` epochs (the run is
cached under `--results`, so a second invocation only re-measures), then compressed by `compress.py`'s own
pipeline with `compressor=ptq_int8` under each variant's overrides. Every compress run exports the trained model to
FP32 ONNX and measures it and the INT8 file on the same images, runtime and threads in the same process: the
speed-up is median FP32 ms / median INT8 ms, the drop is FP32 top-1 - INT8 top-1 in points. The records land in
`<results>/records.jsonl` (`python evaluate.py report=<results>` tabulates them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hydra import compose, initialize_config_dir

from edgecomp.evaluate.hardware import cpu_description
from edgecomp.pipelines import compress

CONF = Path(__file__).resolve().parents[1] / "conf"

# Quantization settings compared (overrides of conf/compressor/ptq_int8.yaml).
VARIANTS = {
    "default": [],
    "minmax": ["compressor.calibrate_method=minmax"],
    "mean_minmax": ["compressor.calibrate_method=mean_minmax"],
    "conv_gemm_only": ["compressor.op_types=[Conv,Gemm,MatMul]"],
    "all_but_depthwise": ["compressor.exclude_depthwise=true"],
    "s8s8": ["compressor.activation_type=int8"],
    "qoperator": ["compressor.format=qoperator"],
}


def measure(model: str, variant: str, args: argparse.Namespace) -> dict:
    overrides = [
        f"model={model}",
        "compressor=ptq_int8",
        *VARIANTS[variant],
        f"dataset.image_size={args.image_size}",
        f"trainer.max_epochs={args.epochs}",
        "trainer.enable_progress_bar=false",
        f"latency.images={args.images}",
        f"device.threads={args.threads}",
        f"paths.results={args.results}",
        f"paths.data={args.data}",
        "logger=none",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="compress"):
        cfg = compose(config_name="compress", overrides=overrides)
    record = compress.run(cfg)
    fp32_ms, int8_ms = record["baseline"]["latency_ms"]["median"], record["latency_ms"]["median"]
    fp32_top1, int8_top1 = record["baseline"]["metrics"]["top1"], record["metrics"]["top1"]
    return {
        "model": model,
        "variant": variant,
        "fp32_ms": fp32_ms,
        "int8_ms": int8_ms,
        "speedup": fp32_ms / int8_ms,
        "fp32_top1": fp32_top1,
        "int8_top1": int8_top1,
        "drop_points": 100 * (fp32_top1 - int8_top1),
        "size_ratio": record["size_bytes"] / record["baseline"]["size_bytes"],
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilenetv3_large_100", "efficientnet_b1"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=5, help="training epochs of each FP32 baseline")
    parser.add_argument("--images", type=int, default=100, help="N: the fixed images timed in each pass")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", default="results/benchmarks/ptq_int8")
    parser.add_argument("--data", default="data", help="where the generated dataset is cached")
    args = parser.parse_args(argv)
    rows = [measure(model, variant, args) for model in args.models for variant in args.variants]
    print(
        f"\n{cpu_description()}, ONNX Runtime, {args.threads} threads, batch 1, {args.image_size}px, median ms/image "
        f"over 10 runs of {args.images} images; synthetic_cls, {args.epochs} training epochs"
    )
    header = f"{'model':<24}{'variant':<20}{'FP32 ms':>9}{'INT8 ms':>9}{'speed-up':>10}{'FP32 top1':>11}"
    print(header + f"{'INT8 top1':>11}{'drop (pt)':>11}{'size':>7}")
    for row in rows:
        print(
            f"{row['model']:<24}{row['variant']:<20}{row['fp32_ms']:>9.2f}{row['int8_ms']:>9.2f}"
            f"{row['speedup']:>9.2f}x{row['fp32_top1']:>11.3f}{row['int8_top1']:>11.3f}{row['drop_points']:>11.2f}"
            f"{row['size_ratio']:>6.2f}x"
        )
    return rows


if __name__ == "__main__":
    main()
