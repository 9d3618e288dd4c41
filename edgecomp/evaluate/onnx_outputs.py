"""What an ONNX file from anywhere takes and returns, and what turns its outputs into the task's predictions.

`evaluate.py artifact=FILE.onnx` scores a file it did not make: an edgecomp export from any compressor (FP32, FP16,
INT8, mixed), a classifier exported elsewhere, or Ultralytics' own export of a YOLOv8. Nothing but the file's
signature says which, so the signature is read (onnx, without the weights) and matched against the task:

- input: one (N, 3, H, W) image batch at the dataset's `image_size` (a symbolic dimension fits any size);
- classification: one output (N, C), C the dataset's class count: logits (what edgecomp's loop reads directly);
- detection: one output (N, 4 + C, A) is Ultralytics' decoded layout (box centre and size in input pixels, then C
  class scores; its NMS gives the detections, edgecomp.models.detection.yolov8.UltralyticsExportDecoder);
  otherwise the outputs must be the configured model's head outputs (edgecomp's own export of `model=...`, every
  level's tensors, decoded by the adapter, as a deployed file of a trained model is).

A file that fits none of these is refused in one line that names its shapes and what was expected.

The file's precision is read from its operators: quantized ones (QuantizeLinear, QLinearConv, ConvInteger, ...)
make it `int8` (mixed INT8/FP32 files too), FP16 weights `fp16`, else `fp32`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from edgecomp.errors import CheckpointError, ConfigError
from edgecomp.models.detection.adapter import DetectorAdapter
from edgecomp.models.outputs import flat_tensors

Dim = int | str  # a fixed size, or a symbolic one (any size)
QUANTIZED_OPS = {
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
}


@dataclass(frozen=True)
class OnnxSignature:
    path: Path
    inputs: tuple[tuple[Dim, ...], ...]
    outputs: tuple[tuple[Dim, ...], ...]
    precision: str  # fp32 | fp16 | int8
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()

    def describe(self) -> str:
        """`inputs [1, 3, 64, 64] -> outputs [1, 84, 84]`: what the refusals name."""
        return f"inputs {_listed(self.inputs)} -> outputs {_listed(self.outputs)}"


def _listed(shapes: tuple[tuple[Dim, ...], ...]) -> str:
    return ", ".join(str(list(shape)) for shape in shapes)


def _shape(value) -> tuple[Dim, ...]:
    """An ONNX value's shape: fixed sizes as ints, symbolic ones by name ("?" where unnamed)."""
    return tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim
    )


def read_signature(path: str | os.PathLike) -> OnnxSignature:
    """The input and output shapes and the precision of the ONNX file `path` (its weights are not read)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"artifact={path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises DecodeError, ValueError or its own errors for a file that is no model
        raise CheckpointError(f"artifact={path} is not an ONNX model ({type(err).__name__}: {err})") from err
    graph = model.graph
    initialised = {initializer.name for initializer in graph.initializer}
    fed = [value for value in graph.input if value.name not in initialised]
    inputs = tuple(_shape(value) for value in fed)
    outputs = tuple(_shape(value) for value in graph.output)
    operators = {node.op_type for node in graph.node}
    if operators & QUANTIZED_OPS:
        precision = "int8"
    elif any(initializer.data_type == onnx.TensorProto.FLOAT16 for initializer in graph.initializer):
        precision = "fp16"
    else:
        precision = "fp32"
    return OnnxSignature(
        path,
        inputs,
        outputs,
        precision,
        tuple(value.name for value in fed),
        tuple(value.name for value in graph.output),
    )


def _fits(dim: Dim, size: int) -> bool:
    return isinstance(dim, str) or dim == size


def check_input(signature: OnnxSignature, image_size: int) -> None:
    """One (N, 3, S, S) input at the dataset's image size, or a ConfigError naming the shapes."""
    if len(signature.inputs) == 1:
        shape = signature.inputs[0]
        if len(shape) == 4 and _fits(shape[1], 3) and _fits(shape[2], image_size) and _fits(shape[3], image_size):
            return
    raise ConfigError(
        f"artifact={signature.path} ({signature.describe()}) does not take the dataset's images: expected one input "
        f"[N, 3, {image_size}, {image_size}] (dataset.image_size={image_size}; set it to the file's input size)"
    )


def check_logits(signature: OnnxSignature, num_classes: int) -> None:
    """One (N, C) output for the dataset's C classes, or a ConfigError naming the shapes."""
    if len(signature.outputs) == 1 and len(signature.outputs[0]) == 2 and _fits(signature.outputs[0][1], num_classes):
        return
    raise ConfigError(
        f"artifact={signature.path} ({signature.describe()}) is no classifier of this dataset's {num_classes} classes: "
        f"expected one output [N, {num_classes}] (logits)"
    )


def detection_decoder(signature: OnnxSignature, model: DetectorAdapter) -> tuple[nn.Module, str | None]:
    """What decodes the file's outputs into detections (see the module docstring), and the configured model's name
    where the file is that model's export (None for Ultralytics' layout); a ConfigError naming the shapes when it
    is neither."""
    num_classes, size = model.num_classes, model.input_size
    outputs = signature.outputs
    if len(outputs) == 1 and len(outputs[0]) == 3 and _fits(outputs[0][1], 4 + num_classes):
        from edgecomp.models.detection.yolov8 import UltralyticsExportDecoder

        settings = {
            key: getattr(model, key)
            for key in ("score_threshold", "iou_threshold", "max_detections")
            if hasattr(model, key)
        }
        return UltralyticsExportDecoder(**settings), None
    with torch.no_grad():
        expected = [tuple(t.shape[1:]) for t in flat_tensors(model.eval()(torch.zeros(1, 3, size, size)))]
    given = [shape[1:] for shape in outputs]
    fits = len(given) == len(expected) and all(
        len(g) == len(e) and all(_fits(d, n) for d, n in zip(g, e, strict=True))
        for g, e in zip(given, expected, strict=True)
    )
    if not model.decodes_forward_outputs or not fits:
        head = ", ".join(str(["N", *shape]) for shape in expected)
        raise ConfigError(
            f"artifact={signature.path} ({signature.describe()}) gives neither Ultralytics' decoded detections (one "
            f"output [N, {4 + num_classes}, A] for the dataset's {num_classes} classes) nor the head outputs of "
            f"model={model.name} at {size} px ({head})"
        )
    return model, str(model.name)
