"""A deployed artifact that is not an nn.Module run in eager PyTorch: a file and the runtime that runs it.

A runtime that runs files (ONNX Runtime) deploys every trained, pruned or distilled network as one
(`Runtime.deploy`: exported once, cached by the weights' fingerprint), and post-training quantization
(edgecomp.compress.ptq_*) makes its own quantized ONNX files. What the record
says of such an artifact comes from the file and its runtime (size and gzip size of the file; top-1 and latency
through the runtime; the precision of the file), and what it cannot change from the network it was made from
(parameter count and FLOPs: quantization stores the same weights in fewer bits and runs the same operations).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from edgecomp.evaluate.runtimes.runtime import Runtime


@dataclass
class ExportedModel:
    # The network the file was made from: its parameter count and FLOPs, and for a detector what decodes the file's
    # outputs. None for a file made elsewhere (`evaluate.py artifact=`): no count, and `decoder` decodes.
    source: nn.Module | None
    path: Path  # the deployable file
    runtime: Runtime  # what runs the file on the target device
    precision: str  # what the file computes in: fp32 | fp16 | int8
    # How long making the file took in this run: None when it was made elsewhere (a quantizer's own file), 0.0 when
    # an earlier run had exported the same weights already (the cached file was reused).
    export_time_s: float | None = None
    # What turns a detector file's outputs into detections when that is not `source` (edgecomp.evaluate.onnx_outputs).
    decoder: nn.Module | None = None

    @property
    def scorer(self) -> nn.Module | None:
        """The network an evaluator is given beside the file's predictor (a detector decodes the outputs with it)."""
        return self.decoder if self.decoder is not None else self.source

    def file_bytes(self) -> bytes:
        return self.path.read_bytes()
