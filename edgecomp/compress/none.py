"""`compressor=none`: the baseline itself is deployed (what every compressor is compared against)."""

from __future__ import annotations

import torch.nn as nn

from edgecomp.compress.compressor import Compressor
from edgecomp.compress.context import CompressionContext


class NoCompression(Compressor):
    deploys_baseline = True

    def compress(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        return model
