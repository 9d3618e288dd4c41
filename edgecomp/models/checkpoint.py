"""Loading weights from files we did not necessarily write: always torch.load(weights_only=True).

A pickle can run code when it is loaded; weights_only=True restricts the unpickler to tensors and plain
containers, so a checkpoint from elsewhere cannot execute anything. Lightning checkpoints written by
train.py load this way too (their `state_dict` is taken, the LightningModule's `model.` prefix removed).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
import torch.nn as nn

from edgecomp.errors import CheckpointError

LIGHTNING_PREFIX = "model."


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it holds Python objects other than tensors and plain containers, and "
            f"loading it could run code (torch.load weights_only=True said: {str(err).splitlines()[0]})"
        ) from err
    except (RuntimeError, EOFError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({err})") from err
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state_dict (a mapping of parameter names to tensors)")
    if obj and all(k.startswith(LIGHTNING_PREFIX) for k in obj):
        obj = {k[len(LIGHTNING_PREFIX) :]: v for k, v in obj.items()}
    return obj


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load `path` into `model`, strictly: every parameter must be present and of the same shape."""
    state = load_state_dict(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint {path} does not fit the configured model {type(model).__name__}: "
            f"{str(err).splitlines()[0]} (is model=... / dataset=... the one it was trained with?)"
        ) from err
    return model
