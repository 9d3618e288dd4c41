"""PyTorch eager mode: runs an nn.Module on the device's accelerator at its precision."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from edgecomp.evaluate.runtimes.runtime import Predictor, Runtime


class TorchEagerPredictor(Predictor):
    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
        self.model = model
        self.device = device
        self.dtype = dtype

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device, self.dtype)

    @torch.inference_mode()
    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class TorchEagerRuntime(Runtime):
    name = "torch"

    def load(self, artifact: nn.Module, device) -> TorchEagerPredictor:
        # A copy: casting to FP16 or moving to the GPU must not change the caller's model.
        model = copy.deepcopy(artifact).eval().to(device.torch_device, device.dtype)
        return TorchEagerPredictor(model, device.torch_device, device.dtype)
