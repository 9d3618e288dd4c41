"""A short hash of a model's weights and their layout: what ties a file made from a model (a search checkpoint, an
exported ONNX file) to the exact network it came from."""

from __future__ import annotations

import hashlib

import torch
import torch.nn as nn


def weights_fingerprint(model: nn.Module) -> str:
    """12 hex digits over the class, every state_dict entry's name, shape, dtype and bytes."""
    digest = hashlib.sha256(type(model).__qualname__.encode())
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]
