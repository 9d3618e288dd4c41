"""The view of an edgecomp model that NVIDIA ModelOpt searches and saves, and the artifact it writes.

ModelOpt's structured pruning (`modelopt.torch.prune`, used by edgecomp.compress.pruning.fastnas) traces a model with
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

`modelopt_conversion()` wraps every ModelOpt conversion (the search's and the restore's): it tells ModelOpt's tracer to
take torchvision's `MultiScaleRoIAlign` (Faster R-CNN's second stage) as a leaf with nothing to search, a boundary
whose input channels stay as they are, instead of tracing into it (which fails on its level mapper).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn as nn

from edgecomp.models.outputs import flat_tensors
from edgecomp.models.timm_classifier import split_batchnorm_act

# Parameter names inside the view start with the attribute that holds the model.
VIEW_PREFIX = "model."
# ModelOpt warnings that every search or restore gives and nobody can act on (see report_modelopt_warnings).
EXPECTED_MODELOPT_WARNINGS = (
    "does not exist! Initializing from scratch",
    "not found, falling back",
    "Found modules that cannot be traced",
    "Found unvisited modules",
)

log = logging.getLogger("edgecomp")


class ModelOptView(nn.Module):
    """`model` (rewritten in place by the output-identical, trace-friendly rewrites above) behind a forward that
    returns a flat tuple of tensors. Search, fine-tune and deploy `view.model`; save and restore the view."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        split_batchnorm_act(model)
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(flat_tensors(self.model(images)))


@contextlib.contextmanager
def modelopt_conversion(view: ModelOptView) -> Iterator[None]:
    """Wraps ModelOpt's conversion of `view` (mtn.convert, or mto.restore, which replays it): while it is open,
    ModelOpt's tracer takes torchvision's MultiScaleRoIAlign as a leaf with no searchable symbols; after it, that
    registration is gone (ModelOpt's registry is process-wide: the user's own ModelOpt calls stay as they were), and
    the conversion's warnings are logged (report_modelopt_warnings).

    Why: Faster R-CNN's RoI pooling maps each box to a pyramid level in Python, which torch.fx cannot trace, and
    ModelOpt traces every module, even those the searched forward never runs. As a leaf without symbols, the pooling
    is a boundary: the FPN channels it reads keep their width, as the box head's first layer (256 x 7 x 7 inputs)
    needs, while the backbone's inner channels, the RPN head and the box head's hidden width stay searchable. ModelOpt still runs the pooling's
    forward on fx proxies when it traces the module on its own, and torchvision caches the level scales it computes
    on its first call: that cache is cleared after the conversion (torchvision recomputes it on the next call)."""
    from modelopt.torch.trace import RobustTracer
    from modelopt.torch.trace.symbols import SymInfo, SymMap
    from torchvision.ops import MultiScaleRoIAlign

    registered_here = not RobustTracer.is_registered_leaf(MultiScaleRoIAlign)
    if registered_here:
        SymMap.register(MultiScaleRoIAlign)(lambda module: SymInfo())
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        report_modelopt_warnings(caught)
    finally:
        if registered_here:
            SymMap.unregister(MultiScaleRoIAlign)
        for module in view.modules():
            if isinstance(module, MultiScaleRoIAlign):
                module.scales, module.map_levels = None, None


def report_modelopt_warnings(caught: list[warnings.WarningMessage]) -> None:
    """ModelOpt's warnings, as log lines. The expected ones at INFO in one line: a fresh search has no checkpoint
    to resume (two warnings), and its tracer lists, in boxed tables, the modules it traced through their children
    (e.g. YOLOv8's C2f blocks, torchvision's detection wrappers) or never reached (YOLOv8's DFL layer, which the
    deployable network does not run)."""
    for warning in caught:
        text = str(warning.message)
        first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
        if any(expected in text for expected in EXPECTED_MODELOPT_WARNINGS):
            log.info("ModelOpt: %s", first_line)
        else:
            log.warning("ModelOpt: %s", text)


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
    return restore_view(model, path).model


def restore_view(model: nn.Module, path: str | os.PathLike) -> ModelOptView:
    """The view restore_artifact restores `model` through, which holds the ModelOpt state (save_artifact of it
    writes the same pruning again)."""
    import modelopt.torch.opt as mto

    view = ModelOptView(model)
    with modelopt_conversion(view):
        mto.restore(view, path)
    return view


def save_with_architecture(
    model: nn.Module, fresh: nn.Module, architecture: str | os.PathLike, path: str | os.PathLike
) -> Path:
    """`model`'s weights saved as a ModelOpt artifact of the pruned architecture in `architecture` (an artifact of
    the same pruning): what a network pruned earlier and trained since (distilled, fine-tuned) is saved as, so that
    the file alone restores it. `fresh`: a new instance of the unpruned architecture."""
    import modelopt.torch.opt as mto

    view = ModelOptView(fresh)
    with modelopt_conversion(view):
        mto.restore(view, architecture)
    view.model.load_state_dict(model.state_dict())
    return save_artifact(view, path)
