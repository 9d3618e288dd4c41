"""The weight files people have, read into one form: named FP32 tensors, with what kind of file it was.

- edgecomp checkpoints and Lightning checkpoints (`state_dict`, keys prefixed `model.`), plain state_dicts
  (`torch.save(model.state_dict())`: torchvision's and timm's `.pth` / `.bin`), and training checkpoints that keep
  the weights under `model` or `state_dict` (torchvision's reference scripts, timm's train script): read with
  `torch.load(weights_only=True)` (edgecomp.models.checkpoint.read_checkpoint);
- `.safetensors` (timm and the Hugging Face hub): tensors only, no pickle at all;
- Ultralytics `.pt` files: a pickled `DetectionModel`, which the weights-only unpickler refuses. They are read by
  the same unpickler with an allowlist of exactly the classes such files hold (edgecomp.models.
  ultralytics_checkpoint); a file naming any other global is refused, naming it. The EMA weights are taken where
  the file has them (a checkpoint written mid-training), else `model`; Ultralytics stores them in FP16.

Floating tensors come back in FP32 (what edgecomp's models train and export in); integer buffers (BatchNorm's
`num_batches_tracked`) as they are.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import torch

from edgecomp.errors import CheckpointError
from edgecomp.models.ultralytics_checkpoint import (
    allowed_classes,
    is_ultralytics_checkpoint,
    names_an_allowed_class,
    ultralytics_state_dict,
)

LIGHTNING_PREFIX = "model."  # a LightningModule's network attribute: what its checkpoint's keys start with

# The first bytes of what torch.save writes: a zip archive (the default since PyTorch 1.6) or, in the legacy format,
# a pickle (protocol 2 and up start with the PROTO opcode).
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO = b"\x80"
# What torch.load's zip reader says of a damaged archive (truncated, or a zip that torch.save did not write).
DAMAGED_ARCHIVE = ("PytorchStreamReader", "inline_container")
SAFETENSORS_SUFFIX = ".safetensors"
# Keys under which training scripts keep the weights beside optimiser state: Lightning and timm (`state_dict`),
# torchvision's reference scripts (`model`). timm's EMA copy (`state_dict_ema`) is preferred where present.
WEIGHTS_KEYS = ("state_dict_ema", "state_dict", "model")
# The two entries of the file modelopt.torch.opt.save writes (a structurally pruned model: edgecomp.models.
# modelopt_artifact restores it).
MODELOPT_ARTIFACT_KEYS = ("modelopt_state", "model_state_dict")


@dataclass
class WeightFile:
    """A weights file's tensors by name, as the file names them (a Lightning prefix removed)."""

    path: Path
    format: str  # state_dict | lightning | safetensors | ultralytics
    tensors: dict[str, torch.Tensor]

    @property
    def sha256(self) -> str:
        """The file's fingerprint (16 hex digits of its SHA-256): which file the record's weights came from."""
        return file_sha256(self.path)


def file_sha256(path: str | os.PathLike, length: int = 16) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def read_weight_file(path: str | os.PathLike) -> WeightFile:
    """The tensors of `path` (any of the formats above), or a CheckpointError saying why they cannot be read."""
    return weight_file(Path(path), read_weights_or_artifact(path))


def read_weights_or_artifact(path: str | os.PathLike) -> object:
    """What `path` holds, read without running pickled code: a safetensors file's tensors, or what the weights-only
    unpickler (with the Ultralytics allowlist) reads, a ModelOpt artifact included (edgecomp.models.checkpoint.
    load_model restores those)."""
    path = Path(path)
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        return _read_safetensors(path)
    return read_checkpoint(path, allow_ultralytics=True)


def weight_file(path: Path, obj: object) -> WeightFile:
    """The tensors of `obj`, what `path` held (read_weights_or_artifact), by name; a CheckpointError where it holds
    none."""
    if is_ultralytics_checkpoint(obj):
        return WeightFile(path, "ultralytics", _fp32(ultralytics_state_dict(obj)))
    if is_modelopt_artifact(obj):
        raise CheckpointError(
            f"{path} is a ModelOpt artifact (a pruned architecture and its weights), not plain weights: give it as "
            "checkpoint=, which restores it into the model"
        )
    form = "safetensors" if path.suffix.lower() == SAFETENSORS_SUFFIX else "state_dict"
    if isinstance(obj, Mapping) and not _all_tensors(obj):
        held = next((key for key in WEIGHTS_KEYS if isinstance(obj.get(key), Mapping) and _all_tensors(obj[key])), None)
        if held is None:
            raise CheckpointError(
                f"{path} holds no state_dict: expected a mapping of parameter names to tensors, or one under "
                f"{' / '.join(repr(key) for key in WEIGHTS_KEYS)}; its keys are {sorted(map(str, obj))[:8]}"
            )
        form = "lightning" if held == "state_dict" and _prefixed(obj[held]) else "state_dict"
        obj = obj[held]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path} holds no state_dict (a mapping of parameter names to tensors)")
    tensors = dict(obj)
    if _prefixed(tensors):
        tensors = {key[len(LIGHTNING_PREFIX) :]: value for key, value in tensors.items()}
    return WeightFile(path, form, _fp32(tensors))


def read_checkpoint(path: str | os.PathLike, allow_ultralytics: bool = False) -> object:
    """What `path` holds, read with torch.load(weights_only=True), or a CheckpointError saying why a file cannot be
    read. Only what a bad file raises becomes a CheckpointError; anything else is a bug and propagates as it is.
    With `allow_ultralytics`, a file the weights-only unpickler refused for naming an Ultralytics class is read again
    with the allowlist of edgecomp.models.ultralytics_checkpoint (anything else it names is still refused)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    with path.open("rb") as file:
        head = file.read(len(ZIP_MAGIC))
    if not head:
        raise CheckpointError(f"checkpoint {path} is empty")
    if path.suffix.lower() == ".onnx" and not head.startswith(ZIP_MAGIC):
        raise CheckpointError(
            f"{path} is an ONNX file, a deployed artifact: evaluate it with `evaluate.py artifact={path}`, or give the "
            "PyTorch checkpoint it was exported from (a record's `checkpoint`, e.g. results/runs/<run>/checkpoints/"
            "last.ckpt)"
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
        if allow_ultralytics and names_an_allowed_class(reason):
            return _read_with_allowlist(path)
        if "GLOBAL" in reason:  # the weights-only unpickler met a class or function: a pickle that could run code
            raise CheckpointError(
                f"refusing to load {path}: it holds Python objects other than tensors and plain containers, and "
                f"loading it could run code (torch.load weights_only=True said: {reason})"
            ) from err
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint: its pickle data is damaged ({reason})"
        ) from err
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


def _read_with_allowlist(path: Path) -> object:
    """`path` read by the weights-only unpickler with the Ultralytics allowlist; a global outside it is refused."""
    # A new list, which mypy types as the list of callables (or (callable, name) pairs) that safe_globals takes.
    with torch.serialization.safe_globals([*allowed_classes()]):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise CheckpointError(
                f"refusing to load {path}: it names a Python global outside the allowlist of classes an Ultralytics "
                f"detection checkpoint holds, and loading it could run code (torch.load weights_only=True said: "
                f"{_unpickler_reason(err)})"
            ) from err


def _unpickler_reason(err: pickle.UnpicklingError) -> str:
    """The line of torch's weights-only error that says what it refused (its other lines are generic advice)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    specific = [line for line in lines if "GLOBAL" in line or line.startswith("Unsupported")]
    return specific[0] if specific else (lines[0] if lines else type(err).__name__)


def is_modelopt_artifact(obj: object) -> TypeGuard[dict[str, Any]]:
    """Whether a loaded checkpoint is what modelopt.torch.opt.save writes (a modelopt_state next to the weights)."""
    return isinstance(obj, dict) and all(key in obj for key in MODELOPT_ARTIFACT_KEYS)


def _all_tensors(mapping: Mapping) -> bool:
    return bool(mapping) and all(isinstance(value, torch.Tensor) for value in mapping.values())


def _prefixed(tensors: Mapping[str, torch.Tensor]) -> bool:
    """A Lightning checkpoint's state_dict: every key under the LightningModule's `model.` attribute."""
    return all(str(key).startswith(LIGHTNING_PREFIX) for key in tensors)


def _fp32(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.float() if value.is_floating_point() else value for key, value in tensors.items()}


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from err
