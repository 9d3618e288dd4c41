"""Loading weights from files we did not necessarily write: always torch.load(weights_only=True).

A pickle can run code when it is loaded; weights_only=True restricts the unpickler to tensors and plain
containers, so a checkpoint from elsewhere cannot execute anything. Lightning checkpoints written by
train.py load this way too (their `state_dict` is taken, the LightningModule's `model.` prefix removed).

`load_model` also takes the artifact of a structurally pruned model (compressor=fastnas), written by
modelopt.torch.opt.save: its shapes differ from a fresh model's, so it is restored into the fresh model by ModelOpt
(edgecomp.models.modelopt_artifact), which replays the pruning and then loads the weights, also weights-only.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
import torch.nn as nn

from edgecomp.errors import CheckpointError
from edgecomp.models.modelopt_artifact import is_modelopt_artifact

LIGHTNING_PREFIX = "model."


def read_checkpoint(path: str | os.PathLike) -> object:
    """What `path` holds, read with torch.load(weights_only=True), or a CheckpointError saying why not."""
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
    return obj


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    obj = read_checkpoint(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        if is_modelopt_artifact(obj):
            raise CheckpointError(
                f"{path} is a ModelOpt artifact (a pruned architecture and its weights), not plain weights: load it "
                "with load_model, which restores it into the model"
            )
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


def load_model(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """`model` with the contents of `path`: plain weights (a state_dict or Lightning checkpoint, loaded strictly by
    load_weights), or a ModelOpt artifact, restored into `model` (which then has the artifact's pruned shapes).
    Returns the loaded model, which for an artifact need not be `model` itself."""
    if is_modelopt_artifact(read_checkpoint(path)):
        from edgecomp.models.modelopt_artifact import restore_artifact

        try:
            return restore_artifact(model, path)
        except Exception as err:  # ModelOpt's own errors (e.g. ApplyModeError): the model does not match
            raise CheckpointError(
                f"ModelOpt artifact {path} cannot be restored into the configured model {type(model).__name__}: "
                f"{str(err).splitlines()[0]} (is model=... / dataset=... the one it was pruned from?)"
            ) from err
    return load_weights(model, path)
