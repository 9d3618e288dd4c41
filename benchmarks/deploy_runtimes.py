"""What each deployment of one network costs on this CPU, measured in one run: eager PyTorch, edgecomp's FP32 ONNX
file and its INT8 file in ONNX Runtime, and, for YOLOv8, Ultralytics' own ONNX export of the same weights in the same
ONNX Runtime session settings; each speed-up with its 95 % interval and verdict.

    python -m benchmarks.deploy_runtimes                   # yolov8n at 320 and 640 px, mobilenetv3_large_100 at 224
    python -m benchmarks.deploy_runtimes --cases yolov8n:320 --images 20 --threads 4

Random-init weights (said in the output): latency does not depend on the values, and the INT8 file is calibrated on
random images, so its accuracy means nothing here (experiment=ptq_yolo measures that on trained weights). All the
deployments of a case are timed against each other in alternating rounds (edgecomp's paired timing: each side in a
session of its own, opened for its turn and closed after it, so an idle session's threads never compete with the
timed one), on the same fixed images, so the ratios are measured, with their intervals, not compared across runs.

What the files hold: edgecomp's is the deployable network (`forward`: normalisation, backbone, neck, head; for a
detector the raw per-level outputs, decoded on the host); Ultralytics' export holds its Detect head's decoding too
(DFL expectation, grid and strides, sigmoid), but not its NMS. The column "vs Ultralytics" is Ultralytics' time over
edgecomp's (>= 1: edgecomp's file is at least as fast).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import tempfile
from pathlib import Path

import torch

from benchmarks.timing import add_latency_arguments, median_ms, protocol_description, speedup_fields, time_sides
from edgecomp.compress.quantization.ptq_int8 import Int8Quantization
from edgecomp.evaluate.hardware import cpu_description
from edgecomp.evaluate.onnx_export import export_onnx
from edgecomp.evaluate.paired_latency import Side
from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime
from edgecomp.evaluate.runtimes.torch_eager import TorchEagerRuntime
from edgecomp.models.detection.yolov8 import YOLOv8Adapter
from edgecomp.models.timm_classifier import create_classifier

DEFAULT_CASES = ("yolov8n:320", "yolov8n:640", "mobilenetv3_large_100:224")
CALIBRATION_IMAGES = 16


def build(name: str, image_size: int) -> torch.nn.Module:
    """The edgecomp model (random init): a YOLOv8 adapter (COCO's 80 classes) or a timm classifier."""
    torch.manual_seed(0)
    if name.startswith("yolov8"):
        return YOLOv8Adapter(num_classes=80, input_size=image_size, scale=name.removeprefix("yolov8")).eval()
    return create_classifier(name, num_classes=1000).eval()


def ultralytics_export(adapter: YOLOv8Adapter, image_size: int, folder: Path) -> Path:
    """Ultralytics' own ONNX exporter on the adapter's weights (its `DetectionModel`), offline, without its optional
    simplifier (not a dependency of edgecomp)."""
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")  # never pip-install anything from a benchmark
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    yolo = YOLO(f"yolov8{adapter.scale}.yaml", verbose=False)
    yolo.model.load_state_dict(adapter.network.state_dict())
    level, cwd = LOGGER.level, Path.cwd()
    LOGGER.setLevel(logging.WARNING)
    os.chdir(folder)  # the exporter writes next to the model's yaml name, i.e. into the working directory
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exported = yolo.export(
                format="onnx", imgsz=image_size, simplify=False, dynamic=False, batch=1, device="cpu"
            )
    finally:
        os.chdir(cwd)
        LOGGER.setLevel(level)
    return Path(folder) / Path(exported).name


def measure(case: str, args: argparse.Namespace) -> dict:
    """Median ms per image of each deployment of one `name:size` case, all timed against each other, and the
    speed-ups between them with their intervals."""
    name, size = case.rsplit(":", 1)
    image_size = int(size)
    model = build(name, image_size)
    images = torch.rand(args.images, 3, image_size, image_size, generator=torch.Generator().manual_seed(1))
    calibration = torch.rand(CALIBRATION_IMAGES, 3, image_size, image_size, generator=torch.Generator().manual_seed(2))
    row = {"case": case, "weights": "random init", "ultralytics_ms": None, "ultralytics_note": "not a YOLO model"}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        fp32 = export_onnx(model, folder / "fp32.onnx", image_size)
        int8 = folder / "int8.onnx"
        Int8Quantization("ptq_int8", calib_images=CALIBRATION_IMAGES, calibrate_method="minmax").quantize_file(
            fp32, int8, calibration
        )
        sides = [
            Side(TorchEagerRuntime(), model, f"{case} torch"),
            Side(OnnxRuntime(), fp32, f"{case} ORT FP32"),
            Side(OnnxRuntime(), int8, f"{case} ORT INT8"),
        ]
        if isinstance(model, YOLOv8Adapter):
            try:
                exported = ultralytics_export(model, image_size, folder)
            except Exception as err:  # an exporter failing offline is a finding to print, not a benchmark crash
                row["ultralytics_note"] = f"Ultralytics' export failed: {type(err).__name__}: {err}"
            else:
                sides.append(Side(OnnxRuntime(), exported, f"{case} Ultralytics' ONNX"))
                row["ultralytics_note"] = None
        timing = time_sides(sides, images, args)
    row["torch_ms"], row["ort_fp32_ms"], row["ort_int8_ms"] = (median_ms(timing, side) for side in range(3))
    row.update(speedup_fields(timing.ratio(1, 0), "ort_over_torch_"))
    row.update(speedup_fields(timing.ratio(2, 1), "int8_over_fp32_"))
    row["vs_ultralytics_cell"] = "-"
    if len(sides) == 4:  # Ultralytics' time over edgecomp's FP32 file's: >= 1, edgecomp's file is at least as fast
        row["ultralytics_ms"] = median_ms(timing, 3)
        row.update(speedup_fields(timing.ratio(1, 3), "vs_ultralytics_"))
    return row


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), help="model:image_size")
    add_latency_arguments(parser, images=20, runs=5)
    args = parser.parse_args(argv)
    print(f"{cpu_description()}, {protocol_description(args)}; speed-up [95 % interval] verdict; random-init weights")
    header = ("case", "torch eager", "ORT FP32", "ORT INT8", "Ultralytics ONNX", "ORT/torch", "INT8/FP32")
    header += ("vs Ultralytics",)
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    rows = []
    for case in args.cases:
        row = measure(case, args)
        cells = [
            row["case"],
            _cell(row["torch_ms"]),
            _cell(row["ort_fp32_ms"]),
            _cell(row["ort_int8_ms"]),
            _cell(row["ultralytics_ms"]),
            row["ort_over_torch_cell"],
            row["int8_over_fp32_cell"],
            row["vs_ultralytics_cell"],
        ]
        print("| " + " | ".join(cells) + " |", flush=True)
        if row["ultralytics_note"] and row["ultralytics_note"] != "not a YOLO model":
            print(f"  ({row['case']}: {row['ultralytics_note']})")
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
