"""Export a model to one self-contained ONNX file, the artifact the ONNX Runtime backend (and PTQ) run.

A classifier's file has one output, `logits`. A detector's `forward` (normalisation, backbone, neck, head) returns
a dataclass of per-level tensors; its file has one output per tensor, in edgecomp.models.outputs.flat_tensors'
order and named by flat_names (`classification_0`, ..., `regression_0`, ...), which the adapter's
`outputs_from_tensors` rebuilds and its `decode` turns into detections.

Exporter: torch 2.14's `torch.onnx.export` defaults to `dynamo=True`, the torch.export-based exporter; the
TorchScript exporter (`dynamo=False`) still works but emits a DeprecationWarning saying it will be removed. Both
export timm's mobilenetv3_small_100, efficientnet_b1 and densenet169 and match eager to ~1e-6 under ONNX Runtime,
so the choice is the dynamo exporter: it is the maintained default, its graph is already optimised (constant
folding, fewer nodes), and code built on the deprecated path would break on an upgrade. Its cost is export time
(~14 s for mobilenetv3_small_100 and ~27 s for densenet169 on two cores, against ~1 s), paid once per artifact.
`external_data=False` because the dynamo exporter otherwise may put the weights beside the graph in a second file;
one file is what the size measurement and a deployment copy expect (the protobuf limit makes models over 2 GB fail,
far above any edge classifier).
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

import onnx
import torch
import torch.nn as nn

from edgecomp.models.outputs import flat_names, flat_tensors

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class FlatOutputs(nn.Module):
    """`model` behind a forward that returns its outputs as a flat tuple of tensors (what an ONNX graph returns)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(flat_tensors(self.model(images)))


def export_onnx(model: nn.Module, path: str | os.PathLike, input_size: int, opset: int = 18) -> Path:
    """Write `model` (taking (N, 3, input_size, input_size) images) to `path` as ONNX with a dynamic batch size.

    The export runs on a CPU, eval-mode copy, so the caller's model keeps its device and train/eval state and
    batch norm / dropout are frozen as at inference. The example batch has 2 images: torch.export specialises a
    dimension seen as 0 or 1, which would fix the batch size. The file appears only once it is complete and has
    passed `onnx.checker.check_model`: it is written to a temporary name and renamed, so an interrupted export
    never leaves a truncated artifact that a later run would measure.
    """
    if input_size < 1:
        raise ValueError(f"input_size must be >= 1, got {input_size}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    model = copy.deepcopy(model).eval().cpu()
    example = torch.randn(2, 3, input_size, input_size)
    with torch.no_grad():
        sample = model(example)
    if isinstance(sample, torch.Tensor):
        output_names = [OUTPUT_NAME]
    else:
        output_names, model = flat_names(sample), FlatOutputs(model).eval()
    # The exporter's graph passes log every rewrite at INFO (hundreds of lines per model) through the root logger.
    quiet = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.WARNING)
    try:
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            dynamo=True,
            external_data=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=output_names,
            # By position, so it does not depend on the name of forward's argument.
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
        onnx.checker.check_model(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    return path
