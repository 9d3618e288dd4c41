"""A compressor that allocates a known amount of memory and holds it a while: what the compression-cost
measurement must find (tests/e2e/test_cost.py runs it through compress.py)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch.nn as nn

from edgecomp.compress.none import NoCompression


class AllocatingCompressor(NoCompression):
    """Deploys the baseline unchanged after holding `megabytes` (10^6 bytes) of written memory for `hold_s`."""

    def __init__(self, name: str, megabytes: int, hold_s: float = 0.3) -> None:
        super().__init__(name)
        self.megabytes = megabytes
        self.hold_s = hold_s

    def compress(self, model: nn.Module, context: Any) -> nn.Module:
        block = np.ones(self.megabytes * 10**6, dtype=np.uint8)  # written, so every page is resident
        time.sleep(self.hold_s)
        del block
        return model
