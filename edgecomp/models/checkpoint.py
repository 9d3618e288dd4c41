"""Loading weights into a model, strictly: a checkpoint, a teacher, a run's own weights.

Files are read by edgecomp.models.weight_files (never by running pickled code: `torch.load(weights_only=True)`,
with an allowlist for Ultralytics' files) and paired with the model by edgecomp.models.weight_matching (so a file
that names its tensors as another library does still loads). Here every parameter must come from the file, in its
shape: what a checkpoint of this very model gives. Starting a training run from weights of another task (another
class count, a classification backbone) is edgecomp.models.pretrained's transfer loading.

`load_model` also takes the artifact of a structurally pruned model (compressor=fastnas), written by
modelopt.torch.opt.save: its shapes differ from a fresh model's, so it is restored into the fresh model by ModelOpt
(edgecomp.models.modelopt_artifact), which replays the pruning and then loads the weights, also weights-only.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn as nn

from edgecomp.errors import CheckpointError
from edgecomp.models.weight_files import (
    WeightFile,
    is_modelopt_artifact,
    read_weight_file,
    read_weights_or_artifact,
    weight_file,
)
from edgecomp.models.weight_matching import describe_mismatch, match_weights

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a weights file as it names them (edgecomp.models.weight_files: FP32, a Lightning prefix
    removed)."""
    return read_weight_file(path).tensors


def state_dict_mismatch(
    expected: Mapping[str, torch.Tensor],
    given: Mapping[str, torch.Tensor],
    fits: Callable[[torch.Size, torch.Size], bool],
) -> str | None:
    """Why `given` (a file's tensors) does not fit `expected` (a model's state_dict), or None: missing and
    unexpected keys, and the tensors whose shape `fits(given_shape, expected_shape)` rejects; a few of each."""
    misshapen = {
        key: (tuple(given[key].shape), tuple(expected[key].shape))
        for key in sorted(set(expected) & set(given))
        if not fits(given[key].shape, expected[key].shape)
    }
    return describe_mismatch(sorted(set(expected) - set(given)), sorted(set(given) - set(expected)), misshapen)


def _pruned_from(given: torch.Size, full: torch.Size) -> bool:
    """Whether a tensor of shape `given` can be a pruned copy of one of shape `full`: as many dims, none wider."""
    return len(given) == len(full) and all(g <= f for g, f in zip(given, full, strict=True))


def load_weights(model: ModuleT, path: str | os.PathLike) -> ModuleT:
    """Load `path` into `model`, strictly: every parameter must come from the file, in the same shape (under a
    renaming the model accepts: edgecomp.models.weight_matching), and every tensor of the file must have its place."""
    return _load_strictly(model, read_weight_file(path))


def _load_strictly(model: ModuleT, weights: WeightFile) -> ModuleT:
    match = match_weights(model, weights)
    if problems := match.problems():
        raise CheckpointError(
            f"checkpoint {weights.path} does not fit the configured model {type(model).__name__}: {problems} "
            "(is model=... / dataset=... the one it was trained with?)"
        )
    # Keys and shapes agree; BatchNorm counters a file may lack keep their value.
    model.load_state_dict(match.loadable, strict=False)
    return model


def load_model(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """`model` with the contents of `path`: plain weights (a state_dict or Lightning checkpoint, loaded strictly by
    load_weights), or a ModelOpt artifact, restored into `model` (which then has the artifact's pruned shapes).
    Returns the loaded model, which for an artifact need not be `model` itself."""
    artifact = read_weights_or_artifact(path)
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
    return _load_strictly(model, weight_file(Path(path), artifact))
