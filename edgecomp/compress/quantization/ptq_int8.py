"""`compressor=ptq_int8`: static INT8 quantization of the FP32 ONNX file by ONNX Runtime's quantization tools.

Steps (all ONNX Runtime's own tools, nothing hand-written):
1. `quant_pre_process`: shape inference and ONNX Runtime's graph optimisations (BatchNorm folded into the
   convolutions, constant folding), so the quantizer sees the graph that will actually run;
2. `quantize_static`: weights quantized per output channel (`per_channel`), activations with ranges calibrated
   on `calib_images` training images (drawn by the run seed, prepared as for evaluation: a detector's letterboxed),
   by `calibrate_method`. The network's outputs stay FP32: a classifier's logits (quantizing them buys no speed,
   and saturating logits tie at the top of the range, which changes the argmax), and a detector's head outputs,
   whose final convolutions run in FP32 on dequantized inputs (box regressions and class logits span ranges that
   8 bits per tensor would cut, and they feed the decoder's exponentials and sigmoids).

Calibration (`calibrate_method`): `mean_minmax` sets each tensor's range from its per-image min and max averaged
over the images (NNCF's default), `minmax` from the absolute min and max. Neither suits every network: on
MobileNetV3-Large (synthetic_cls, 5 epochs) a few channels reach 20x the median channel's maximum, minmax spends
the 8 bits on them and top-1 falls from 0.71 to 0.16, while mean_minmax keeps 0.73; on EfficientNet-B1 mean_minmax
clips what matters (0.495 -> 0.37) and minmax keeps 0.49. `auto` (the default) makes both files and keeps the one
whose top-1 agrees most often with the FP32 network's on the calibration images (no labels: the choice is made on
data the quantizer already has; for a detector, whose outputs are per-level maps, the candidate whose outputs are
closest to the FP32 network's, by their mean cosine similarity per image); the record's `compression` gives each
candidate's agreement and the choice.

Defaults: QDQ format, per-channel signed INT8 weights, unsigned INT8 activations, every operator ONNX Runtime can
quantize. The alternatives (`op_types`, `exclude_depthwise`: leave depthwise convolutions in FP32, `format`,
`activation_type`, `reduce_range`) are measured against each other in one run by `python -m benchmarks.ptq_int8`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import numpy as np
import onnx
import onnxruntime
import torch
import torch.nn as nn
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from pydantic import AfterValidator, Field

from edgecomp.compress.context import CompressionContext, RunSpec
from edgecomp.compress.quantization.int8_mixed_precision import LatencyChosenPrecision
from edgecomp.compress.quantization.onnx_quantizer import OnnxPostTrainingQuantization
from edgecomp.config import build
from edgecomp.errors import ConfigError
from edgecomp.evaluate.remote.remote_device import RemoteDevice
from edgecomp.evaluate.runtimes.onnxruntime import session_options
from edgecomp.settings import Settings

FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
TYPES = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
METHODS = {
    "mean_minmax": CalibrationMethod.MinMax,
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
AUTO: Final = "auto"  # (Final: its type is the literal "auto", one of calibrate_method's values)
AUTO_CANDIDATES = ("mean_minmax", "minmax")
# mean_minmax: ONNX Runtime's MinMax calibrater with its moving average on, fed one image per batch, averages each
# tensor's per-image minimum and maximum over the calibration images.
MEAN_MINMAX_OPTIONS = {"CalibMovingAverage": True}
CALIBRATION_BATCH = 16


class ImageBatches(CalibrationDataReader):
    """Feeds the calibration images to the quantizer's calibration session, a batch at a time."""

    def __init__(self, images: np.ndarray, input_name: str, batch_size: int = CALIBRATION_BATCH) -> None:
        self.batches = iter([images[i : i + batch_size] for i in range(0, len(images), batch_size)])
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


def output_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The nodes that produce the graph's outputs (a classifier's Gemm, a detector's final head convolutions)."""
    outputs = {output.name for output in model.graph.output}
    return [node for node in model.graph.node if outputs.intersection(node.output)]


def _outputs(path: Path, images: np.ndarray) -> list[np.ndarray]:
    """Every output of the ONNX file on `images`, batch by batch, concatenated along the batch."""
    options = session_options(torch.get_num_threads())
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batches = [
        session.run(None, {name: images[i : i + CALIBRATION_BATCH]}) for i in range(0, len(images), CALIBRATION_BATCH)
    ]
    return [np.concatenate([batch[k] for batch in batches]) for k in range(len(batches[0]))]


def top1_agreement(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    """The share of images on which two classifiers' outputs (each a one-element list of logits) give the same
    highest-scoring class."""
    (expected,), (got,) = reference, candidate
    return float((expected.argmax(1) == got.argmax(1)).mean())


def output_cosine(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    """How close the candidate's outputs are to the reference's: the cosine similarity of each output map per image,
    averaged over the outputs and images (1.0: the same up to scale)."""
    similarities = []
    for expected, got in zip(reference, candidate, strict=True):
        a, b = expected.reshape(len(expected), -1), got.reshape(len(got), -1)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        similarities.append(np.where(norms > 0, (a * b).sum(1) / np.maximum(norms, 1e-12), 1.0))
    return float(np.mean(similarities))


class Int8Settings(Settings):
    calib_images: int = Field(128, ge=1, description="a whole number of calibration images >= 1")
    format: Literal["qdq", "qoperator"] = Field(
        "qdq", description="qdq (QuantizeLinear/DequantizeLinear pairs, fused by the runtime) or qoperator"
    )
    per_channel: bool = Field(True, description="true (one weight scale per output channel) or false (per tensor)")
    activation_type: Literal["uint8", "int8"] = Field("uint8", description="uint8 or int8")
    weight_type: Literal["int8", "uint8"] = Field("int8", description="int8 or uint8")
    calibrate_method: Literal["auto", "mean_minmax", "minmax", "entropy", "percentile"] = Field(
        AUTO, description="one of auto, mean_minmax, minmax, entropy, percentile"
    )
    op_types: Annotated[list[str] | None, AfterValidator(lambda types: types or None)] = Field(
        None, description="a list of ONNX operator types to quantize, e.g. [Conv, Gemm] (null: every one it can)"
    )
    reduce_range: bool = Field(False, description="true (7-bit weights) or false")
    symmetric: bool = Field(
        False, description="true (every zero point 0: what TensorRT builds INT8 engines from) or false"
    )
    exclude_depthwise: bool = Field(False, description="true (depthwise convolutions stay FP32) or false")
    mixed_precision: Literal["latency"] | None = Field(
        None,
        description="null (every node ONNX Runtime can quantize in INT8) or latency (INT8 only where it is faster "
        "than FP32 on the device's runtime)",
    )
    max_drop: float = Field(
        1.0,
        ge=0,
        description="the accuracy the mixed-precision file may lose, in points of top-1 / mAP50-95 (>= 0, e.g. 1.0)",
    )
    accuracy_images: int = Field(512, ge=1, description="a whole number >= 1")
    profile_images: int = Field(8, ge=1, description="a whole number >= 1")
    profile_runs: int = Field(20, ge=1, description="a whole number >= 1")


class Int8Quantization(OnnxPostTrainingQuantization):
    precision = "int8"
    file_name = "int8.onnx"

    settings_class = Int8Settings
    options: Int8Settings

    def __init__(self, name: str, **settings: Any) -> None:
        super().__init__(name, **settings)
        self.calibration_choice: dict[str, Any] = {}  # what `auto` measured and kept, once a file is made
        self.mixed_precision_report: dict[str, Any] = {}  # what mixed_precision=latency measured and chose

    def check(self, spec: RunSpec) -> None:
        """As every ONNX quantizer's, and for a board measured over SSH: a TensorRT board builds INT8 engines from
        Q/DQ files with signed, symmetric INT8 only; the latency-chosen INT8 profiles nodes on the host, not the
        board."""
        super().check(spec)
        device = build(spec.device)
        if not isinstance(device, RemoteDevice):
            return
        options = self.options
        if options.mixed_precision is not None:
            raise ConfigError(
                f"compressor={self.name} compressor.mixed_precision={options.mixed_precision} on device={device.name}: "
                "it profiles each node with ONNX Runtime on this machine, not on the board; leave it null (every node "
                "INT8), or choose the nodes with device=cpu on a machine like the board"
            )
        tensorrt_ready = (options.format, options.activation_type, options.weight_type, options.symmetric) == (
            "qdq", "int8", "int8", True
        )  # fmt: skip
        if device.runtime.name == "tensorrt" and not tensorrt_ready:
            raise ConfigError(
                f"compressor={self.name} on device={device.name}: TensorRT builds INT8 engines from Q/DQ files with "
                "signed, symmetric INT8 only; add compressor.format=qdq compressor.activation_type=int8 "
                "compressor.weight_type=int8 compressor.symmetric=true"
            )

    def quantize(self, model: nn.Module, fp32: Path, output: Path, context: CompressionContext) -> str:
        options = self.options
        calibration = context.datamodule.calibration_images(options.calib_images)
        if options.mixed_precision is None:
            self.quantize_file(fp32, output, calibration)
            return self.precision
        choice = LatencyChosenPrecision(
            self, options.max_drop, options.accuracy_images, options.profile_images, options.profile_runs
        )
        self.mixed_precision_report = choice.run(model, fp32, output, calibration, context)
        return choice.precision

    def quantize_file(self, fp32: Path, output: Path, calibration: torch.Tensor) -> None:
        """Quantize the FP32 ONNX file `fp32` into `output`, calibrating on the image batch `calibration`."""
        with tempfile.TemporaryDirectory(dir=output.parent) as scratch:
            prepared = self.preprocess(fp32, Path(scratch) / "prepared.onnx")
            self.quantize_prepared(prepared, fp32, output, calibration)

    @staticmethod
    def preprocess(fp32: Path, prepared: Path) -> Path:
        """ONNX Runtime's pre-processing of `fp32` into `prepared`: the graph the quantizer sees (its node names are
        the quantized file's)."""
        # ONNX Runtime's symbolic shape inference (there for transformers' dynamic dimensions) does not complete on a
        # detector's graph (YOLOv8's); ONNX's own shape inference, which still runs, is what convolutional networks
        # need.
        single_output = len(onnx.load(str(fp32), load_external_data=False).graph.output) == 1
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=not single_output)
        return prepared

    def quantize_prepared(
        self,
        prepared: Path,
        fp32: Path,
        output: Path,
        calibration: torch.Tensor,
        excluded: Sequence[str] = (),
        method: str | None = None,
    ) -> str:
        """Quantize the pre-processed file `prepared` into `output`, leaving the nodes `excluded` in FP32, with the
        calibration method `method` (None: the configured one; `auto` compares its candidates against the FP32
        file `fp32`). Returns the calibration method used."""
        images = calibration.numpy().astype(np.float32)
        if method is not None:
            methods: tuple[str, ...] = (method,)
        else:
            methods = AUTO_CANDIDATES if self.options.calibrate_method == AUTO else (self.options.calibrate_method,)
        single_output = len(onnx.load(str(prepared), load_external_data=False).graph.output) == 1
        with tempfile.TemporaryDirectory(dir=output.parent) as scratch:
            candidates = {name: Path(scratch) / f"{name}.onnx" for name in methods}
            for name, path in candidates.items():
                self._quantize_static(prepared, path, images, name, excluded)
            chosen = methods[0]
            if len(candidates) > 1:
                # A classifier (one output, the logits): how often the top-1 class agrees; a detector: how close
                # its head outputs are.
                measure, key = (
                    (top1_agreement, "calibration_top1_agreement")
                    if single_output
                    else (output_cosine, "calibration_output_cosine")
                )
                reference = _outputs(fp32, images)  # the FP32 file's outputs, computed once for every candidate
                agreement = {name: measure(reference, _outputs(path, images)) for name, path in candidates.items()}
                chosen = max(methods, key=agreement.__getitem__)  # the first listed on a tie
                self.calibration_choice = {"calibrate_method_used": chosen, key: agreement}
            onnx.checker.check_model(str(candidates[chosen]))
            os.replace(candidates[chosen], output)
        return chosen

    def _quantize_static(
        self, prepared: Path, output: Path, images: np.ndarray, method: str, also_excluded: Sequence[str] = ()
    ) -> None:
        model = onnx.load(str(prepared))
        input_name = model.graph.input[0].name
        settings = self.options
        excluded = [*(depthwise_convolutions(model) if settings.exclude_depthwise else []), *also_excluded]
        mean_minmax = method == "mean_minmax"
        options: dict[str, Any] = {}
        if len(model.graph.output) == 1:  # a classifier's logits: its last layer's output stays FP32
            options["OpTypesToExcludeOutputQuantization"] = sorted({node.op_type for node in output_nodes(model)})
        else:  # a detector's head outputs: the convolutions that make them run in FP32
            excluded = [*excluded, *(node.name for node in output_nodes(model))]
        if mean_minmax:
            options.update(MEAN_MINMAX_OPTIONS)
        if settings.symmetric:
            options.update(ActivationSymmetric=True, WeightSymmetric=True)
        quantize_static(
            str(prepared),
            str(output),
            ImageBatches(images, input_name, batch_size=1 if mean_minmax else CALIBRATION_BATCH),
            quant_format=FORMATS[settings.format],
            op_types_to_quantize=settings.op_types,
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            activation_type=TYPES[settings.activation_type],
            weight_type=TYPES[settings.weight_type],
            calibrate_method=METHODS[method],
            nodes_to_exclude=excluded or None,
            extra_options=options,
        )

    def settings(self) -> dict[str, Any]:
        options = self.options.model_dump()
        return {
            "precision": self.precision,
            "format": "onnx",
            "runtime": "onnxruntime",
            "calib_images": options.pop("calib_images"),
            "quant_format": options.pop("format"),  # `format` is the file's
            **options,
        }

    def results(self) -> dict[str, Any]:
        return {**self.calibration_choice, **self.mixed_precision_report}
