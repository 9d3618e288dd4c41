"""Helpers over models the tests build."""

from __future__ import annotations

import torch
import torch.nn as nn


def randomised(model: nn.Module, seed: int) -> nn.Module:
    """Every float parameter and buffer drawn at random (BatchNorm statistics included), so that a weight loaded in
    the wrong place, or not at all, changes the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=generator) * 0.2
                tensor.copy_(values + (0.9 if name.endswith(("running_var", "bn.weight")) else -0.1))
    return model
