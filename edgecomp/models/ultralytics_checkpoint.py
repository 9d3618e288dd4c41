"""Ultralytics `.pt` files, read without running arbitrary pickled code.

An Ultralytics checkpoint is a dict whose `model` (and, mid-training, `ema`) is a pickled `DetectionModel`:
torch's weights-only unpickler refuses it, since rebuilding a module means calling its class. Read here by the same
unpickler with an allowlist (`torch.serialization.safe_globals`) of the classes that a YOLOv8 detection file holds,
listed by reading the globals of files Ultralytics wrote (`Model.save` and a trainer's `last.pt`): the detection
model, its blocks, and the torch.nn layers they are made of. Each is rebuilt the way the weights-only unpickler
rebuilds an allowed class (`__new__`, then its `__setstate__` or `__dict__` update): no `__reduce__` code, no
import of anything else. A file naming any other global (another model family, a crafted pickle) is refused by
that unpickler, naming the global.

Importing the classes imports Ultralytics (AGPL-3.0), so that happens only for a file the plain weights-only
reader refused for naming one of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

import torch
import torch.nn as nn

# The torch.nn layers a YOLOv8 detection model is built from (by module path, as the pickle names them).
TORCH_LAYERS = (nn.Conv2d, nn.BatchNorm2d, nn.SiLU, nn.MaxPool2d, nn.Upsample, nn.Sequential, nn.ModuleList)
# The Ultralytics classes, as "module:name" (imported only when needed).
ULTRALYTICS_CLASSES = (
    "ultralytics.nn.tasks:DetectionModel",
    "ultralytics.nn.modules.head:Detect",
    "ultralytics.nn.modules.block:C2f",
    "ultralytics.nn.modules.block:Bottleneck",
    "ultralytics.nn.modules.block:SPPF",
    "ultralytics.nn.modules.block:DFL",
    "ultralytics.nn.modules.conv:Conv",
    "ultralytics.nn.modules.conv:Concat",
)


def names_an_allowed_class(reason: str) -> bool:
    """Whether the weights-only unpickler's refusal (`reason`) named a class of the allowlist: then the file is
    worth reading again with it. A refusal naming anything else stands."""
    allowed = [f"{layer.__module__}.{layer.__name__}" for layer in TORCH_LAYERS]
    allowed += [entry.replace(":", ".") for entry in ULTRALYTICS_CLASSES]
    return any(f"GLOBAL {name}" in reason for name in allowed)


def allowed_classes() -> list[type]:
    """The allowlist itself: the torch.nn layers and the Ultralytics classes (importing Ultralytics, offline)."""
    import importlib

    from edgecomp.models.detection.yolov8 import offline_ultralytics_environment

    offline_ultralytics_environment()
    classes: list[type] = list(TORCH_LAYERS)
    for entry in ULTRALYTICS_CLASSES:
        module, name = entry.split(":")
        classes.append(getattr(importlib.import_module(module), name))
    return classes


def is_ultralytics_checkpoint(obj: Any) -> TypeGuard[Mapping[str, Any]]:
    """A dict with a pickled detection model under `ema` or `model` (what Ultralytics saves)."""
    return isinstance(obj, Mapping) and any(isinstance(obj.get(key), nn.Module) for key in ("ema", "model"))


def ultralytics_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The weights of an Ultralytics checkpoint: its EMA model's where it has one (the weights Ultralytics itself
    evaluates and exports), else its model's; keys as Ultralytics names them (`model.0.conv.weight`, ...)."""
    ema = checkpoint.get("ema")
    network = ema if isinstance(ema, nn.Module) else checkpoint["model"]
    return dict(network.state_dict())  # the unpickled module is dropped: no copy needed (FP32 conversion copies)
