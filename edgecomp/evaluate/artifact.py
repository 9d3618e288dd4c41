"""A deployed artifact that is not an nn.Module run in eager PyTorch: a file and the runtime that runs it.

Post-training quantization (edgecomp.compress.ptq_*) deploys an ONNX file run by ONNX Runtime. What the record
says of such an artifact comes from the file and its runtime (size and gzip size of the file; top-1 and latency
through the runtime; the precision of the file), and what it cannot change from the network it was made from
(parameter count and FLOPs: quantization stores the same weights in fewer bits and runs the same operations).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from edgecomp.evaluate.runtimes.base import Runtime


@dataclass
class ExportedModel:
    source: nn.Module  # the network the file was made from: its parameter count and FLOPs
    path: Path  # the deployable file
    runtime: Runtime  # what runs the file on the target device
    precision: str  # what the file computes in: fp32 | fp16 | int8

    def file_bytes(self) -> bytes:
        return self.path.read_bytes()
