"""What the two post-training quantizers share: the trained network exported to FP32 ONNX, run by ONNX Runtime.

PTQ's deployable artifact on `device=cpu` is an ONNX file run by ONNX Runtime (docs/methods/ptq.md: a real
deployable format whose file shrinks). The baseline of the comparison is the same network exported to FP32 ONNX and
run by the same runtime (`deploy_baseline`), so the size ratio is file against file and the speed-up runtime against
runtime, not ONNX Runtime against eager PyTorch. On `device=cuda` the deployment path is ModelOpt + TensorRT; where
TensorRT is not installed the run stops before any work with a message that says so (never a silent CPU
fallback).
"""

from __future__ import annotations

import importlib.util
from abc import abstractmethod
from pathlib import Path

import torch.nn as nn

from edgecomp.compress.compressor import Compressor
from edgecomp.compress.context import CompressionContext, RunSpec
from edgecomp.config import build
from edgecomp.errors import ConfigError
from edgecomp.evaluate.artifact import ExportedModel
from edgecomp.evaluate.remote.remote_device import RemoteDevice
from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime
from edgecomp.models.detection.adapter import DetectorAdapter


class OnnxPostTrainingQuantization(Compressor):
    """Deploys the model as an FP32 ONNX file, then `quantize` writes the quantized file into the work folder."""

    precision: str  # of the quantized file: fp16 | int8
    deploys_file = True
    file_name: str

    def compress(self, model: nn.Module, context: CompressionContext) -> ExportedModel:
        fp32 = self.deploy_baseline(model, context).path
        context.work_dir.mkdir(parents=True, exist_ok=True)
        path = context.work_dir / self.file_name
        precision = self.quantize(model, fp32, path, context)
        return ExportedModel(source=model, path=path, runtime=OnnxRuntime(), precision=precision)

    def deploy_baseline(self, model: nn.Module, context: CompressionContext) -> ExportedModel:
        """`model` as the FP32 ONNX file ONNX Runtime deploys, which the quantized file is made from: exported once
        for its weights (the dynamo exporter takes seconds to tens of seconds) into the runtime's folder of deployed
        files, where the training run's measurement of the same weights has usually put it already."""
        return OnnxRuntime().deploy(model, context.image_size, context.deploy_dir or context.work_dir)

    @abstractmethod
    def quantize(self, model: nn.Module, fp32: Path, output: Path, context: CompressionContext) -> str:
        """Write the quantized model to `output` from the FP32 file `fp32` exported from `model` (atomically:
        complete or absent); returns the precision of what it wrote (`precision`, or "fp32" where a quantizer found
        that nothing pays for lower precision)."""

    def check(self, spec: RunSpec) -> None:
        """The model and the device, before any work: a detector whose detections need more than its exported
        network (Faster R-CNN's second stage) is refused, and so is a CUDA target."""
        model = build(spec.model)
        if isinstance(model, DetectorAdapter) and not model.decodes_forward_outputs:
            raise ConfigError(
                f"compressor={self.name} cannot quantize model={spec.model.name}: its second stage (RoI pooling, box "
                "head, NMS) runs on proposals outside the exported network, so the quantized file's outputs are not "
                "its detections; quantize RetinaNet, FCOS or YOLOv8"
            )
        device = build(spec.device)  # the device as it will run (a Jetson profile on a machine without a GPU: the CPU)
        # A board's TensorRT over SSH builds its engine from the quantized ONNX file (its Q/DQ nodes pin INT8).
        if device.accelerator == "cuda" and not isinstance(device, RemoteDevice):
            # The CUDA deployment is a TensorRT engine built with ModelOpt; not running ONNX Runtime on the CPU
            # instead, which would record a CPU measurement under a CUDA device.
            installed = importlib.util.find_spec("tensorrt") is not None
            raise ConfigError(
                f"compressor={self.name} on device={device.name}: the CUDA path (ModelOpt quantization, TensorRT "
                f"engine) is not available here (TensorRT {'installed, but edgecomp does not build engines yet' if installed else 'is not installed'}); "
                "use device=cpu, which deploys the quantized ONNX file with ONNX Runtime"
            )
