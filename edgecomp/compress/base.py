"""The interface every compressor implements, and how compress.py hands it the baseline."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch.nn as nn


class Compressor(ABC):
    """Turns a trained baseline into the model that is deployed.

    `compress` may modify and return `model` (it receives a copy of the baseline) or return a new one; the
    pipeline measures its wall time and peak memory and evaluates baseline and result on the same device.
    `job` (edgecomp.pipelines.common.Job) gives access to the data, the device and the config.
    """

    # True for a compressor whose result is the baseline unchanged: one evaluation then serves both sides.
    deploys_baseline: bool = False

    def __init__(self, name: str) -> None:
        self.name = name  # the config option's name, which the record reports

    @abstractmethod
    def compress(self, model: nn.Module, job: Any) -> nn.Module: ...

    def settings(self) -> dict[str, Any]:
        """The compressor's settings, recorded under the record's `compression`."""
        return {}
