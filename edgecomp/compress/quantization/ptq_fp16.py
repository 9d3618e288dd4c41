"""`compressor=ptq_fp16`: the FP32 ONNX file with its weights and computation converted to FP16.

The conversion is ONNX Runtime's own (`onnxruntime.transformers.float16.convert_float_to_float16`), with the
graph's inputs and outputs kept FP32 (`keep_io_types`), so the artifact takes the same images as the baseline and
the file is about half its size. On a CPU, ONNX Runtime runs the FP16 operators it has no FP16 kernel for in FP32
(it inserts the casts itself): the file shrinks, the CPU latency does not; FP16 is a GPU precision.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import onnx
import onnx_ir as ir
import torch.nn as nn
from onnxruntime.transformers.float16 import convert_float_to_float16

from edgecomp.compress.context import CompressionContext
from edgecomp.compress.quantization.onnx_quantizer import OnnxPostTrainingQuantization


def drop_repeated_casts(model: onnx.ModelProto) -> None:
    """Remove the Cast nodes that repeat an earlier one (same input, same output name), in place.

    Where one value feeds two operators the converter keeps in FP32 (e.g. the scales shared by YOLOv8's two
    Resize nodes), it inserts one Cast per consumer under the same output name: a graph that declares a value twice,
    which ONNX refuses. The casts are identical, so the first one serves every consumer."""
    seen: dict[str, tuple[str, ...]] = {}
    kept = []
    for node in model.graph.node:
        if node.op_type == "Cast" and len(node.output) == 1:
            output, inputs = node.output[0], tuple(node.input)
            if seen.get(output) == inputs:
                continue
            seen.setdefault(output, inputs)
        kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)


class Fp16Quantization(OnnxPostTrainingQuantization):
    precision = "fp16"
    file_name = "fp16.onnx"

    def quantize(self, model: nn.Module, fp32: Path, output: Path, context: CompressionContext) -> str:
        converted = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
        drop_repeated_casts(converted)
        # The converter appends the input/output casts at the end of the node list; ONNX requires the nodes in
        # topological order (the checker refuses the graph otherwise), so sort them with onnx_ir.
        graph = ir.from_proto(converted)
        graph.graph.sort()
        converted = ir.to_proto(graph)
        tmp = output.with_name(f".{output.name}.tmp{os.getpid()}")
        try:
            onnx.save(converted, str(tmp))
            onnx.checker.check_model(str(tmp))
            os.replace(tmp, output)
        finally:
            tmp.unlink(missing_ok=True)
        return self.precision

    def settings(self) -> dict[str, Any]:
        return {"precision": self.precision, "format": "onnx", "runtime": "onnxruntime"}
