"""The interface every runtime implements.

A runtime turns an artifact into a Predictor for a TargetDevice. The evaluation and latency loops only see
Predictors: `prepare(batch)` does the untimed part (moving images to the device, casting them), `__call__`
runs the network, `synchronize()` waits for the device so a clock read after it is honest, and `time_passes` times
passes over prepared batches on this machine's clock (a board's predictor times them on the board's instead).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from edgecomp.models.outputs import flat_tensors


class Predictor(ABC):
    @abstractmethod
    def prepare(self, images: torch.Tensor) -> Any:
        """Put a CPU float batch (N, 3, H, W) where and how the network takes it. Not timed."""

    @abstractmethod
    def __call__(self, inputs: Any) -> Any:
        """Run the network on prepared inputs; returns its raw output."""

    def to_logits(self, outputs: Any) -> torch.Tensor:
        """Raw output as a float CPU tensor (N, classes)."""
        return outputs.float().cpu()

    def to_tensors(self, outputs: Any) -> list[torch.Tensor]:
        """Raw outputs as float CPU tensors, flat, in the order edgecomp.models.outputs.flat_tensors gives (a
        detector's head outputs: each field's levels in turn)."""
        return [tensor.float().cpu() for tensor in flat_tensors(outputs)]

    def synchronize(self) -> None:  # noqa: B027 - a concrete default: CPU runtimes have nothing to wait for
        """Block until queued device work is done (a no-op on the CPU)."""

    def time_passes(self, batches: list[Any], count: int, passes: int, desc: str = "latency") -> list[float]:
        """ms per image of each of `passes` passes over prepared `batches` (`count` images in all): each pass timed
        as a whole, the clock read after synchronising the device."""
        timed = []
        for _ in tqdm(range(passes), desc=desc, unit="pass", disable=None, leave=False):
            start = time.perf_counter()
            for batch in batches:
                self(batch)
            self.synchronize()
            timed.append((time.perf_counter() - start) * 1000.0 / count)
        return timed


class Runtime(ABC):
    name: str
    # Whether the runtime runs a file made from the network (so a detector must be decodable from forward()'s
    # outputs: DetectorAdapter.decodes_forward_outputs), rather than the nn.Module itself.
    runs_files: bool = False

    @abstractmethod
    def load(self, artifact: Any, device) -> Predictor:
        """A Predictor running `artifact` on `device` (an edgecomp.evaluate.device.TargetDevice)."""

    def deploy(self, model: nn.Module, input_size: int, folder: Path) -> Any:
        """What this runtime runs of `model` (a network taking input_size^2 images): the module itself by default;
        a runtime of files returns an edgecomp.evaluate.artifact.ExportedModel, its file kept in `folder`."""
        return model

    def details(self, device, precision: str | None = None) -> dict[str, Any]:
        """What the record's `runtime` says of this runtime on `device` beyond its name (e.g. its provider), running a
        file of `precision` (None: the network itself)."""
        return {}
