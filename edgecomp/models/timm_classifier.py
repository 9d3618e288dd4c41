"""timm image classifiers: random init, or weights from a local file (never a hub download).

`split_batchnorm_act` rewrites timm's fused BatchNorm + activation layers as a plain `nn.BatchNorm2d` followed by
the activation, with the same output: ModelOpt's structured pruning (edgecomp.compress.pruning.fastnas) recognises
`nn.BatchNorm2d` only by its exact class, so a `BatchNormAct2d` hides the channels of every convolution before it
from the search (on MobileNetV3 and EfficientNet, only the squeeze-excitation layers would be left to prune).
"""

from __future__ import annotations

import os
from collections import OrderedDict

import timm
import torch.nn as nn
from timm.layers import BatchNormAct2d

from edgecomp.models.pretrained import load_pretrained


def create_classifier(
    name: str, num_classes: int, pretrained_file: str | os.PathLike | None = None, drop_rate: float = 0.0
) -> nn.Module:
    """Build timm model `name` with a `num_classes`-way head (and `drop_rate` dropout before it).

    `pretrained_file`: weights for this architecture (timm's `.safetensors`, `.bin` or `.pth`, e.g. ImageNet
    weights; an edgecomp checkpoint), loaded by edgecomp.models.pretrained: where the class count differs, the
    classifier keeps its fresh initialisation and everything else is loaded, the usual transfer-learning start.
    """
    if not timm.is_model(name):
        raise ValueError(f"timm has no model named {name!r}")
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, drop_rate=drop_rate)
    if pretrained_file is not None:
        load_pretrained(model, pretrained_file)
    return model


def split_batchnorm_act(model: nn.Module) -> int:
    """Replace every timm `BatchNormAct2d` in `model` with `nn.Sequential(bn=nn.BatchNorm2d, drop=..., act=...)`,
    in place; returns how many were replaced.

    BatchNormAct2d computes `act(drop(batch_norm(x)))` with the very `F.batch_norm` call of `nn.BatchNorm2d`, so the
    output is identical, in training mode (where the running statistics update the same way) as in eval mode. The
    BatchNorm's parameters and buffers are copied; the dropout and activation modules are reused. Parameter names
    gain a level (`bn1.weight` becomes `bn1.bn.weight`): a state_dict of the original model no longer fits, which
    is why this runs on a loaded model (and again on a fresh one before a pruned artifact is restored into it).
    """
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not BatchNormAct2d:  # exactly timm's class: a subclass may compute something else
                continue
            batchnorm = nn.BatchNorm2d(
                child.num_features,
                eps=child.eps,
                momentum=child.momentum,
                affine=child.affine,
                track_running_stats=child.track_running_stats,
                device=child.weight.device if child.weight is not None else None,
                dtype=child.weight.dtype if child.weight is not None else None,
            )
            # The BatchNorm's own entries (weight, bias, running statistics, batch count), not the children's.
            own = {key: value for key, value in child.state_dict().items() if "." not in key}
            batchnorm.load_state_dict(own, strict=True)
            batchnorm.train(child.training)
            setattr(parent, name, nn.Sequential(OrderedDict(bn=batchnorm, drop=child.drop, act=child.act)))
            replaced += 1
    return replaced
