"""INT8 post-training quantization on the CPU target, measured in one run: speed-up over the FP32 baseline on the
same runtime (ONNX Runtime), and accuracy drop, per model and per quantization setting; with the default variants,
full INT8 against INT8 only where it pays (compressor.mixed_precision=latency).

    python -m benchmarks.ptq_int8                      # the six timm classifiers + YOLOv8n: full INT8, latency-chosen
    python -m benchmarks.ptq_int8 --models resnet50 --image-size 160 --epochs 3 --variants default all_but_depthwise

Each model is trained once (a classifier on the generated `synthetic_cls` set at `--image-size` for `--epochs`
epochs; YOLOv8n on `synthetic_sod` at `--detector-size` for `--detector-epochs`), the run cached under `--results`
so a second invocation only re-measures, then compressed by `compress.py`'s own pipeline with
`compressor=ptq_int8` under each variant's overrides. Every compress run exports the trained model to FP32 ONNX
and measures it and the INT8 file on the same images, runtime and threads in the same process: the speed-up is
median FP32 ms / median INT8 ms, the drop is FP32 - INT8 top-1 (mAP50-95 for YOLOv8n) in points on the evaluation
split. The latency-chosen run also times, in its own process, the three files it chose from (FP32, full INT8,
mixed): the "INT8 in run" column is full INT8's speed-up there, next to the chosen file's. The records land in
`<results>/records.jsonl` (`python evaluate.py report=<results>` tabulates them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hydra import compose, initialize_config_dir

from benchmarks.timing import speedup_fields
from edgecomp.evaluate.evaluator import ACCURACY_METRIC
from edgecomp.evaluate.hardware import cpu_description
from edgecomp.evaluate.uncertainty import RatioInterval
from edgecomp.pipelines import compress

CONF = Path(__file__).resolve().parents[1] / "conf"

# Quantization settings compared (overrides of conf/compressor/ptq_int8.yaml).
VARIANTS = {
    "default": [],
    "latency": ["compressor.mixed_precision=latency"],
    "minmax": ["compressor.calibrate_method=minmax"],
    "mean_minmax": ["compressor.calibrate_method=mean_minmax"],
    "conv_gemm_only": ["compressor.op_types=[Conv,Gemm,MatMul]"],
    "all_but_depthwise": ["compressor.exclude_depthwise=true"],
    "s8s8": ["compressor.activation_type=int8"],
    "qoperator": ["compressor.format=qoperator"],
}
CLASSIFIERS = [
    "mobilenetv3_small_100",
    "mobilenetv3_large_100",
    "efficientnet_b1",
    "efficientnet_b3",
    "densenet169",
    "resnet50",
]
DETECTORS = ("yolov8n",)


def model_overrides(model: str, args: argparse.Namespace) -> list[str]:
    if model in DETECTORS:
        return [
            f"model={model}",
            "dataset=synthetic_sod",
            f"dataset.image_size={args.detector_size}",
            f"trainer.max_epochs={args.detector_epochs}",
        ]
    return [f"model={model}", f"dataset.image_size={args.image_size}", f"trainer.max_epochs={args.epochs}"]


def measure(model: str, variant: str, args: argparse.Namespace) -> dict:
    overrides = [
        *model_overrides(model, args),
        "compressor=ptq_int8",
        *VARIANTS[variant],
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
    metric = ACCURACY_METRIC[cfg.task]
    fp32_ms, int8_ms = record["baseline"]["latency_ms"]["median"], record["latency_ms"]["median"]
    fp32_score, int8_score = record["baseline"]["metrics"][metric], record["metrics"][metric]
    paired = record["vs_baseline"]["latency"]  # the two files timed against each other in alternating rounds
    row = {
        "model": model,
        "variant": variant,
        "metric": metric,
        "fp32_ms": fp32_ms,
        "int8_ms": int8_ms,
        **speedup_fields(RatioInterval.from_record(paired)),
        "rounds": paired["rounds"],
        "passes": record["latency_ms"]["runs"],
        f"fp32_{metric}": fp32_score,
        f"int8_{metric}": int8_score,
        "drop_points": 100 * (fp32_score - int8_score),
        "size_ratio": record["size_bytes"] / record["baseline"]["size_bytes"],
        "written": record["runtime"]["precision"],
    }
    choice = record["compression"].get("mixed_precision_choice")
    if choice:  # the three files the latency-chosen run timed against each other, in its own process
        row["written"] = choice["written"]
        row["int8_nodes"] = f"{choice['int8_nodes']}/{choice['quantizable_nodes']}"
        full = (choice["candidates"].get("int8") or {}).get("vs_fp32")
        if full:
            row["full_int8_speedup_in_run"] = 1 / full["ratio"]
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[*CLASSIFIERS, *DETECTORS])
    parser.add_argument("--variants", nargs="+", default=["default", "latency"], choices=list(VARIANTS))
    parser.add_argument("--image-size", type=int, default=96, help="classifiers' input size")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs of each FP32 classifier")
    parser.add_argument("--detector-size", type=int, default=320, help="YOLOv8n's input size")
    parser.add_argument("--detector-epochs", type=int, default=20, help="training epochs of the FP32 YOLOv8n")
    parser.add_argument("--images", type=int, default=100, help="N: the fixed images timed in each pass")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", default="results/benchmarks/ptq_int8")
    parser.add_argument("--data", default="data", help="where the generated datasets are cached")
    args = parser.parse_args(argv)
    rows = [measure(model, variant, args) for model in args.models for variant in args.variants]
    print(
        f"\n{cpu_description()}, ONNX Runtime, {args.threads} threads, batch 1, median ms/image over "
        f"{rows[0]['passes']} passes of {args.images} images, FP32 and INT8 timed against each other in "
        f"{rows[0]['rounds']} alternating rounds (speed-up: FP32 / INT8, "
        f"[95 % interval] and verdict); classifiers: synthetic_cls at {args.image_size} px, {args.epochs} training epochs "
        f"(top-1); YOLOv8n: synthetic_sod at {args.detector_size} px, {args.detector_epochs} epochs (mAP50-95)"
    )
    header = f"{'model':<24}{'variant':<20}{'FP32 ms':>9}{'INT8 ms':>9}  {'speed-up [95 % interval]':>36}"
    print(
        header + f"{'FP32 acc':>10}{'INT8 acc':>10}{'drop (pt)':>11}{'size':>7}  {'written':<8}{'INT8 nodes':>11}"
        f"{'INT8 in run':>13}"
    )
    for row in rows:
        metric = row["metric"]
        in_run = row.get("full_int8_speedup_in_run")
        print(
            f"{row['model']:<24}{row['variant']:<20}{row['fp32_ms']:>9.2f}{row['int8_ms']:>9.2f}"
            f"  {row['cell']:>36}{row[f'fp32_{metric}']:>10.3f}{row[f'int8_{metric}']:>10.3f}"
            f"{row['drop_points']:>11.2f}{row['size_ratio']:>6.2f}x  {row['written']:<8}"
            f"{row.get('int8_nodes', '-'):>11}{(f'{in_run:.2f}x' if in_run else '-'):>13}"
        )
    return rows


if __name__ == "__main__":
    main()
