"""ONNX Runtime: runs an exported .onnx file (see edgecomp.evaluate.onnx_export) on the device's accelerator.

The session is configured from the TargetDevice so that ORT and torch eager are measured under the same
conditions: `device.threads` intra-op threads (None leaves ORT's default, one per physical core), one inter-op
thread (a classifier is a chain of ops; parallel branches would only add threads that compete for the same cores),
and all graph optimisations (what a deployment would use): `ORT_ENABLE_ALL` includes the layout optimisations
(NCHWc blocked convolutions with their activations fused), which make ORT's FP32 convolutions about 1.5-3x faster
on an AVX2 CPU. `OnnxRuntime(layout_optimizations=False)` stops at `ORT_ENABLE_EXTENDED`: a slower FP32 reference,
there only so that `benchmarks.int8_runtimes` can show how much of a quoted INT8 speed-up is the FP32 side's missing
layout optimisation.

Inputs are host numpy arrays. On the CPU that is where the network reads them; with the CUDAExecutionProvider
`run` copies them to the GPU, so that copy is inside the timed call (binding device-resident OrtValues would
remove it; not done yet).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn

from edgecomp.errors import CheckpointError, DeviceError
from edgecomp.evaluate.artifact import ExportedModel
from edgecomp.evaluate.onnx_export import export_onnx
from edgecomp.evaluate.runtimes.runtime import Predictor, Runtime
from edgecomp.models.fingerprint import weights_fingerprint

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def session_options(threads: int | None, layout_optimizations: bool = True) -> ort.SessionOptions:
    """The session settings edgecomp runs ONNX files with: `threads` intra-op threads (a device's `threads`; None or
    0: ONNX Runtime's default), one inter-op thread, every graph optimisation (or all but the layout ones). Idle
    threads spin, as deployed: two files are compared one session at a time instead (edgecomp.evaluate.
    paired_latency), since spinning off was measured 1.30x slower (docs/measurement.md)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0  # 0 = ORT's default
    options.inter_op_num_threads = 1
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if layout_optimizations
        else ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    )
    return options


class NumpyPredictor(Predictor):
    """A predictor whose network takes and gives host numpy arrays (ONNX Runtime here or on a board)."""

    def prepare(self, images: torch.Tensor) -> np.ndarray:
        # Untimed: the copy to a contiguous float32 host array is input preparation, not the network.
        return np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)

    def to_logits(self, outputs: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(outputs)).float()

    def to_tensors(self, outputs: np.ndarray | list[np.ndarray]) -> list[torch.Tensor]:
        arrays = outputs if isinstance(outputs, list) else [outputs]
        return [torch.from_numpy(np.asarray(array)).float() for array in arrays]


class OnnxRuntimePredictor(NumpyPredictor):
    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        # A file exported for one image at a time (Ultralytics' default export) takes batches image by image.
        self.one_image_at_a_time = session.get_inputs()[0].shape[0] == 1

    def __call__(self, inputs: np.ndarray) -> np.ndarray | list[np.ndarray]:
        """The file's one output (a classifier's logits), or all of them in the file's order (a detector's)."""
        if self.one_image_at_a_time and len(inputs) != 1:
            per_image = [self.session.run(None, {self.input_name: inputs[i : i + 1]}) for i in range(len(inputs))]
            outputs = [np.concatenate(parts) for parts in zip(*per_image, strict=True)]
        else:
            outputs = self.session.run(None, {self.input_name: inputs})
        return outputs[0] if len(outputs) == 1 else outputs

    def synchronize(self) -> None:
        """Nothing to wait for: `InferenceSession.run` returns only once the outputs are on the host."""


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    runs_files = True

    def __init__(self, layout_optimizations: bool = True) -> None:
        self.layout_optimizations = layout_optimizations

    def deploy(self, model: nn.Module, input_size: int, folder: Path) -> ExportedModel:
        """`model` as an FP32 ONNX file in `folder`, exported once for its weights and input size: the file is named
        by the weights' fingerprint, so a later run (or the other side of a comparison) with the same weights reuses
        it, and the record says whether it did (`export_time_s` 0.0) or how long the export took."""
        path = Path(folder) / f"{type(model).__name__}-{weights_fingerprint(model)}-{input_size}px.onnx"
        if path.is_file():
            return ExportedModel(source=model, path=path, runtime=self, precision="fp32", export_time_s=0.0)
        start = time.perf_counter()
        export_onnx(model, path, input_size)
        elapsed = time.perf_counter() - start
        return ExportedModel(source=model, path=path, runtime=self, precision="fp32", export_time_s=elapsed)

    def details(self, device, precision: str | None = None) -> dict[str, Any]:
        return {
            "provider": PROVIDERS[device.accelerator],
            "layout_optimizations": self.layout_optimizations,
        }

    def load(self, artifact: str | os.PathLike, device) -> OnnxRuntimePredictor:
        """A predictor for the .onnx file `artifact` on `device` (a TargetDevice).

        Only a path is accepted: exporting an nn.Module here would need an input size the runtime does not know,
        and would hide a slow, failure-prone step inside `load`; call `export_onnx` first.
        """
        if not isinstance(artifact, (str, os.PathLike)):
            raise TypeError(
                f"OnnxRuntime.load takes the path of an .onnx file, got {type(artifact).__name__}; export a model "
                "first with edgecomp.evaluate.onnx_export.export_onnx(model, path, input_size)"
            )
        path = Path(artifact)
        if not path.is_file():
            raise CheckpointError(f"ONNX model {path} does not exist (export it with export_onnx first)")
        if device.precision != "fp32":
            # The exported graph is FP32; running it and recording precision=fp16 would misreport the measurement.
            raise DeviceError(
                f"device={device.name}: the onnxruntime runtime runs FP32 ONNX files only, got precision="
                f"{device.precision!r}; use precision=fp32"
            )
        provider = PROVIDERS[device.accelerator]
        available = ort.get_available_providers()
        if provider not in available:
            raise DeviceError(
                f"device={device.name} needs ONNX Runtime's {provider}, but this onnxruntime {ort.__version__} "
                f"has only {available}. Install onnxruntime-gpu, or use accelerator=cpu."
            )
        options = session_options(device.threads, self.layout_optimizations)
        session = ort.InferenceSession(str(path), options, providers=[provider])
        return OnnxRuntimePredictor(session)
