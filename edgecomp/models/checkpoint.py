"""Loading weights from files we did not necessarily write: always torch.load(weights_only=True).

A pickle can run code when it is loaded; weights_only=True restricts the unpickler to tensors and plain
containers, so a checkpoint from elsewhere cannot execute anything. Lightning checkpoints written by
train.py load this way too (their `state_dict` is taken, the LightningModule's `model.` prefix removed).

`load_model` also takes the artifact of a structurally pruned model (compressor=fastnas), written by
modelopt.torch.opt.save: its shapes differ from a fresh model's, so it is restored into the fresh model by ModelOpt
(edgecomp.models.modelopt_artifact), which replays the pruning and then loads the weights, also weights-only.
"""

from __future__ import annotations

import copy
import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn as nn

from edgecomp.errors import CheckpointError
from edgecomp.models.modelopt_artifact import is_modelopt_artifact

LIGHTNING_PREFIX = "model."


# The first bytes of what torch.save writes: a zip archive (the default since PyTorch 1.6) or, in the legacy format,
# a pickle (protocol 2 and up start with the PROTO opcode).
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO = b"\x80"
# What torch.load's zip reader says of a damaged archive (truncated, or a zip that torch.save did not write).
DAMAGED_ARCHIVE = ("PytorchStreamReader", "inline_container")


def read_checkpoint(path: str | os.PathLike) -> object:
    """What `path` holds, read with torch.load(weights_only=True), or a CheckpointError saying why a file cannot be
    read. Only what a bad file raises becomes a CheckpointError; anything else is a bug and propagates as it is."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    with path.open("rb") as file:
        head = file.read(len(ZIP_MAGIC))
    if not head:
        raise CheckpointError(f"checkpoint {path} is empty")
    if path.suffix.lower() == ".onnx" and not head.startswith(ZIP_MAGIC):
        raise CheckpointError(
            f"{path} is an ONNX file, a deployed artifact: give the PyTorch checkpoint it was exported from (a "
            "record's `checkpoint`, e.g. results/runs/<run>/checkpoints/last.ckpt)"
        )
    if not (head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_PROTO)):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint: torch.save writes a zip archive (or, in its legacy format, a pickle), "
            f"and this file starts with {head!r}"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _unpickler_reason(err)
        if "GLOBAL" in reason:  # the weights-only unpickler met a class or function: a pickle that could run code
            raise CheckpointError(
                f"refusing to load {path}: it holds Python objects other than tensors and plain containers, and "
                f"loading it could run code (torch.load weights_only=True said: {reason})"
            ) from err
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: its pickle data is damaged ({reason})") from err
    except EOFError as err:  # a legacy-format file cut short
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: it ends early (truncated?)") from err
    except RuntimeError as err:
        if not any(marker in str(err) for marker in DAMAGED_ARCHIVE):
            raise
        first = str(err).splitlines()[0]
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint: its zip archive is damaged or truncated ({first})"
        ) from err
    return obj


def _unpickler_reason(err: pickle.UnpicklingError) -> str:
    """The line of torch's weights-only error that says what it refused (its other lines are generic advice)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    specific = [line for line in lines if "GLOBAL" in line or line.startswith("Unsupported")]
    return specific[0] if specific else (lines[0] if lines else type(err).__name__)


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


def state_dict_mismatch(
    expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], fits: Callable[[torch.Size, torch.Size], bool]
) -> str | None:
    """Why `given` (a file's tensors) does not fit `expected` (a model's state_dict), or None: missing and
    unexpected keys, and the tensors whose shape `fits(given_shape, expected_shape)` rejects; a few of each."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = [
        f"{key} {tuple(given[key].shape)} (the model's: {tuple(expected[key].shape)})"
        for key in sorted(set(expected) & set(given))
        if not fits(given[key].shape, expected[key].shape)
    ]
    problems = [
        f"{label} {', '.join(items[:3])}{f' and {len(items) - 3} more' if len(items) > 3 else ''}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch for", shapes))
        if items
    ]
    return "; ".join(problems) or None


def _pruned_from(given: torch.Size, full: torch.Size) -> bool:
    """Whether a tensor of shape `given` can be a pruned copy of one of shape `full`: as many dims, none wider."""
    return len(given) == len(full) and all(g <= f for g, f in zip(given, full, strict=True))


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load `path` into `model`, strictly: every parameter must be present and of the same shape."""
    state = load_state_dict(path)
    if mismatch := state_dict_mismatch(model.state_dict(), state, lambda given, expected: given == expected):
        raise CheckpointError(
            f"checkpoint {path} does not fit the configured model {type(model).__name__}: {mismatch} "
            "(is model=... / dataset=... the one it was trained with?)"
        )
    model.load_state_dict(state, strict=True)  # keys and shapes agree: anything it raises now is a bug
    return model


def load_model(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """`model` with the contents of `path`: plain weights (a state_dict or Lightning checkpoint, loaded strictly by
    load_weights), or a ModelOpt artifact, restored into `model` (which then has the artifact's pruned shapes).
    Returns the loaded model, which for an artifact need not be `model` itself."""
    artifact = read_checkpoint(path)
    if is_modelopt_artifact(artifact):
        from edgecomp.models.modelopt_artifact import ModelOptView, restore_artifact

        # A pruned layer keeps its name and at most its full width: an artifact of another architecture (other
        # names) or another head (a wider classifier) is refused here, before ModelOpt replays its pruning.
        expected = ModelOptView(copy.deepcopy(model)).state_dict()
        if mismatch := state_dict_mismatch(expected, artifact["model_state_dict"], _pruned_from):
            raise CheckpointError(
                f"ModelOpt artifact {path} cannot be restored into the configured model {type(model).__name__}: "
                f"{mismatch} (is model=... / dataset=... the one it was pruned from?)"
            )
        return restore_artifact(model, path)
    return load_weights(model, path)
