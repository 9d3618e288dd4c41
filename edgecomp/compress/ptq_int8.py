"""`compressor=ptq_int8`: static INT8 quantization of the FP32 ONNX file by ONNX Runtime's quantization tools.

Steps (all ONNX Runtime's own tools, nothing hand-written):
1. `quant_pre_process`: shape inference and ONNX Runtime's graph optimisations (BatchNorm folded into the
   convolutions, constant folding), so the quantizer sees the graph that will actually run;
2. `quantize_static`: weights quantized per output channel (`per_channel`), activations with ranges calibrated
   on `calib_images` training images (drawn by the run seed, prepared as for evaluation), by `calibrate_method`.

Defaults: QDQ format, per-channel signed INT8 weights, unsigned INT8 activations, every operator ONNX Runtime can
quantize. The alternatives (`op_types`, `exclude_depthwise`: leave depthwise convolutions in FP32, `format`,
`activation_type`, `reduce_range`) are measured against each other in one run by `python -m benchmarks.ptq_int8`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgecomp.compress.onnx_ptq import OnnxPostTrainingQuantization
from edgecomp.errors import ConfigError

FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
TYPES = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
CALIBRATION_BATCH = 16


class ImageBatches(CalibrationDataReader):
    """Feeds the calibration images to the quantizer's calibration session, a batch at a time."""

    def __init__(self, images: np.ndarray, input_name: str) -> None:
        self.batches = iter([images[i : i + CALIBRATION_BATCH] for i in range(0, len(images), CALIBRATION_BATCH)])
        self.input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}


def depthwise_convolutions(model: onnx.ModelProto) -> list[str]:
    """The names of the graph's depthwise Conv nodes (one group per input channel, more than one group)."""
    weights = {initializer.name: initializer.dims for initializer in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        group = next((attribute.i for attribute in node.attribute if attribute.name == "group"), 1)
        dims = weights.get(node.input[1])
        if group > 1 and dims is not None and dims[1] == 1:  # weight (C_out, C_in / group, kh, kw)
            names.append(node.name)
    return names


class Int8Quantization(OnnxPostTrainingQuantization):
    precision = "int8"
    file_name = "int8.onnx"

    def __init__(
        self,
        name: str,
        calib_images: int = 128,
        format: str = "qdq",
        per_channel: bool = True,
        activation_type: str = "uint8",
        weight_type: str = "int8",
        calibrate_method: str = "minmax",
        op_types: list[str] | None = None,
        reduce_range: bool = False,
        exclude_depthwise: bool = False,
    ) -> None:
        super().__init__(name)
        for key, value, allowed in (
            ("format", format, FORMATS),
            ("activation_type", activation_type, TYPES),
            ("weight_type", weight_type, TYPES),
            ("calibrate_method", calibrate_method, METHODS),
        ):
            if value not in allowed:
                raise ConfigError(f"compressor.{key}={value!r}: expected one of {sorted(allowed)}")
        if calib_images < 1:
            raise ConfigError(f"compressor.calib_images={calib_images}: expected at least 1 calibration image")
        self.calib_images = calib_images
        self.format = format
        self.per_channel = per_channel
        self.activation_type = activation_type
        self.weight_type = weight_type
        self.calibrate_method = calibrate_method
        self.op_types = list(op_types) if op_types else None
        self.reduce_range = reduce_range
        self.exclude_depthwise = exclude_depthwise

    def quantize(self, fp32: Path, output: Path, job: Any) -> None:
        self.quantize_file(fp32, output, job.datamodule.calibration_images(self.calib_images))

    def quantize_file(self, fp32: Path, output: Path, calibration: torch.Tensor) -> None:
        """Quantize the FP32 ONNX file `fp32` into `output`, calibrating on the image batch `calibration`."""
        images = calibration.numpy().astype(np.float32)
        input_name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name
        with tempfile.TemporaryDirectory(dir=output.parent) as scratch:
            prepared = Path(scratch) / "prepared.onnx"
            quant_pre_process(str(fp32), str(prepared))
            excluded = depthwise_convolutions(onnx.load(str(prepared))) if self.exclude_depthwise else None
            quantized = Path(scratch) / output.name
            quantize_static(
                str(prepared),
                str(quantized),
                ImageBatches(images, input_name),
                quant_format=FORMATS[self.format],
                op_types_to_quantize=self.op_types,
                per_channel=self.per_channel,
                reduce_range=self.reduce_range,
                activation_type=TYPES[self.activation_type],
                weight_type=TYPES[self.weight_type],
                calibrate_method=METHODS[self.calibrate_method],
                nodes_to_exclude=excluded,
            )
            onnx.checker.check_model(str(quantized))
            os.replace(quantized, output)

    def settings(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "format": "onnx",
            "runtime": "onnxruntime",
            "calib_images": self.calib_images,
            "quant_format": self.format,
            "per_channel": self.per_channel,
            "activation_type": self.activation_type,
            "weight_type": self.weight_type,
            "calibrate_method": self.calibrate_method,
            "op_types": self.op_types,
            "reduce_range": self.reduce_range,
            "exclude_depthwise": self.exclude_depthwise,
        }
