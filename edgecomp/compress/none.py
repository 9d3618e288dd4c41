"""`compressor=none`: the baseline itself is deployed (what every compressor is compared against)."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from edgecomp.compress.base import Compressor


class NoCompression(Compressor):
    deploys_baseline = True

    def compress(self, model: nn.Module, job: Any) -> nn.Module:
        return model
