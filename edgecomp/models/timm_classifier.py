"""timm image classifiers: random init, or weights from a local file (never a hub download)."""

from __future__ import annotations

import os
from pathlib import Path

import timm
import torch.nn as nn

from edgecomp.errors import CheckpointError


def create_classifier(
    name: str, num_classes: int, pretrained_file: str | os.PathLike | None = None, drop_rate: float = 0.0
) -> nn.Module:
    """Build timm model `name` with a `num_classes`-way head (and `drop_rate` dropout before it).

    `pretrained_file`: a state_dict for the same architecture (e.g. ImageNet weights saved with torch.save or
    safetensors). timm loads it with weights_only=True and drops its classifier when the class count differs,
    which is the usual transfer-learning start.
    """
    if not timm.is_model(name):
        raise ValueError(f"timm has no model named {name!r}")
    if pretrained_file is None:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, drop_rate=drop_rate)
    path = Path(pretrained_file)
    if not path.is_file():
        raise CheckpointError(f"model.pretrained_file={path} does not exist (a state_dict file for {name})")
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, num_classes=num_classes)
