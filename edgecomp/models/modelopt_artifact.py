"""The view of an edgecomp model that NVIDIA ModelOpt searches and saves, and the artifact it writes.

ModelOpt's structured pruning (`modelopt.torch.prune`, used by edgecomp.compress.fastnas) traces a model with
torch.fx, counts its FLOPs with torchprofile (a torch.jit trace) and saves the result with `modelopt.torch.opt.save`:
the model's state_dict plus a "modelopt_state" that records how the architecture was changed (which channels each
layer keeps). Restoring it (`modelopt.torch.opt.restore`) replays those changes on a freshly built model of the
original architecture, then loads the weights: a pruned model is not loadable as plain weights, its shapes differ.

`ModelOptView` is the module ModelOpt sees, and the same view must be built when the artifact is restored:
- its forward is the model's deployable network (for a detector, `DetectorAdapter.forward`: backbone, neck, head;
  no pre- or post-processing, which therefore is never traced or pruned) returning a flat tuple of tensors: a
  detector returns a `HeadOutputs` dataclass, through which torch.jit (and so the FLOPs count) sees no tensors at all;
- it applies the output-identical rewrites that let the tracer see channels: timm's `BatchNormAct2d` as
  `nn.BatchNorm2d` + activation (edgecomp.models.timm_classifier.split_batchnorm_act). (YOLOv8's Concat layers are
  made traceable by the YOLOv8 adapter itself, whose state_dict that does not change.)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgecomp.models.timm_classifier import split_batchnorm_act

# The two entries of the file modelopt.torch.opt.save writes.
ARTIFACT_KEYS = ("modelopt_state", "model_state_dict")
# Parameter names inside the view start with the attribute that holds the model.
VIEW_PREFIX = "model."


def flat_tensors(output: Any) -> list[torch.Tensor]:
    """The tensors of a model output, in order: a tensor, or dataclasses, sequences and mappings of them."""
    if isinstance(output, torch.Tensor):
        return [output]
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return [t for field in dataclasses.fields(output) for t in flat_tensors(getattr(output, field.name))]
    if isinstance(output, Mapping):
        return [t for value in output.values() for t in flat_tensors(value)]
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in flat_tensors(item)]
    return []


class ModelOptView(nn.Module):
    """`model` (rewritten in place by the output-identical, trace-friendly rewrites above) behind a forward that
    returns a flat tuple of tensors. Search, fine-tune and deploy `view.model`; save and restore the view."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        split_batchnorm_act(model)
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(flat_tensors(self.model(images)))


def is_modelopt_artifact(obj: Any) -> bool:
    """Whether a loaded checkpoint is what modelopt.torch.opt.save writes (a modelopt_state next to the weights)."""
    return isinstance(obj, dict) and all(key in obj for key in ARTIFACT_KEYS)


def save_artifact(view: ModelOptView, path: str | os.PathLike) -> Path:
    """Write the view's architecture changes and weights with modelopt.torch.opt.save (atomically)."""
    import modelopt.torch.opt as mto

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    mto.save(view, tmp)
    os.replace(tmp, path)
    return path


def restore_artifact(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """`model` (a fresh instance of the architecture the artifact was pruned from) with the artifact's architecture
    and weights, restored by modelopt.torch.opt.restore (which loads with torch.load(weights_only=True))."""
    import modelopt.torch.opt as mto

    view = ModelOptView(model)
    mto.restore(view, path)
    return view.model
