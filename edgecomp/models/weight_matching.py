"""Pairing a weight file's tensors with a model's parameters, by name and shape.

A file names its tensors as the library that wrote it did: Ultralytics' `model.0.conv.weight` is edgecomp's
`network.model.0.conv.weight`, a torchvision RetinaNet's `backbone.body.conv1.weight` is `detector.backbone.body.
conv1.weight`, and a classification ResNet-50's `layer1.0.conv1.weight` is a detector's `detector.backbone.body.
layer1.0.conv1.weight`. A model lists the renamings it accepts (`weight_file_prefixes`: (file prefix, model
prefix) pairs, beside the identity and DDP's `module.`), and the one that puts the most of the file's names onto
the model's is used: no renaming table per file, and a file of another architecture pairs few names whatever the
renaming.

BatchNorm's `num_batches_tracked` counters are left out of every comparison: torchvision's pretrained files (frozen
BatchNorm) have none, and they only matter for BatchNorm's cumulative average (momentum=None), which none of
edgecomp's models use. So are a model's aliases (one module under two names, `model_tensors`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from edgecomp.models.weight_files import WeightFile

# Accepted for every model: the names as they are, and those of a model saved from inside DistributedDataParallel.
GENERIC_PREFIXES = (("", ""), ("module.", ""))
COUNTER_SUFFIX = "num_batches_tracked"


@dataclass
class WeightMatch:
    """How a file's tensors pair with a model's state_dict under one renaming."""

    file: WeightFile
    mapping: tuple[str, str]  # (file prefix, model prefix)
    expected: dict[str, torch.Tensor]  # the model's tensors it was paired with (model_tensors)
    loadable: dict[str, torch.Tensor] = field(default_factory=dict)  # model key -> the file's tensor, same shape
    misshapen: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)  # key -> (file, model)
    missing: list[str] = field(default_factory=list)  # model keys the file lacks
    unused: list[str] = field(default_factory=list)  # file keys (the file's names) with no model key

    def problems(self) -> str | None:
        """Missing, unexpected and misshapen keys, a few of each (None when everything pairs)."""
        return describe_mismatch(self.missing, self.unused, self.misshapen)


def describe_mismatch(
    missing: list[str],
    unexpected: list[str],
    misshapen: dict[str, tuple[tuple[int, ...], tuple[int, ...]]],
    limit: int = 3,
) -> str | None:
    """`missing ...; unexpected ...; shape mismatch for KEY (given) (the model's: (expected))`, a few of each (None
    when all three are empty): what a refusal to load a file says."""
    shapes = [f"{key} {given} (the model's: {expected})" for key, (given, expected) in misshapen.items()]
    found = [
        f"{label} {', '.join(items[:limit])}{f' and {len(items) - limit} more' if len(items) > limit else ''}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch for", shapes))
        if items
    ]
    return "; ".join(found) or None


def _counted(keys: Iterable[str]) -> list[str]:
    return [key for key in keys if not key.endswith(COUNTER_SUFFIX)]


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """`model`'s state_dict without BatchNorm counters and without aliases: a module held under two names (YOLOv8's
    adapter keeps its Detect head as `detect` too) is listed under the first name only, since loading it there
    loads the other."""
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, tuple[int, ...]]] = set()
    for key, tensor in model.state_dict(keep_vars=True).items():
        if key.endswith(COUNTER_SUFFIX):
            continue
        identity = (tensor.data_ptr(), tuple(tensor.shape))
        if tensor.numel() and identity in seen:
            continue
        seen.add(identity)
        tensors[key] = tensor.detach()
    return tensors


def key_mappings(model: nn.Module) -> list[tuple[str, str]]:
    """The (file prefix, model prefix) renamings `model` accepts: the generic ones and its own."""
    return [*GENERIC_PREFIXES, *getattr(model, "weight_file_prefixes", ())]


def match_weights(model: nn.Module, weights: WeightFile) -> WeightMatch:
    """The pairing of `weights` with `model` under the accepted renaming that pairs the most names (then the most
    equal shapes; then the first listed)."""
    expected = model_tensors(model)
    # A file written from this model holds its aliases too: they pair with nothing and are no surprise.
    aliases = set(model.state_dict()) - set(expected)
    best: tuple[tuple[int, int], WeightMatch] | None = None
    for file_prefix, model_prefix in key_mappings(model):
        match = WeightMatch(weights, (file_prefix, model_prefix), expected)
        paired: set[str] = set()
        for file_key, tensor in weights.tensors.items():
            if file_key.endswith(COUNTER_SUFFIX):
                continue
            key = model_prefix + file_key[len(file_prefix) :] if file_key.startswith(file_prefix) else None
            if key in aliases:
                continue
            if key not in expected:
                match.unused.append(file_key)
                continue
            paired.add(key)
            if tensor.shape == expected[key].shape:
                match.loadable[key] = tensor
            else:
                match.misshapen[key] = (tuple(tensor.shape), tuple(expected[key].shape))
        match.missing = [key for key in expected if key not in paired]
        score = (len(paired), len(match.loadable))
        if best is None or score > best[0]:
            best = (score, match)
    assert best is not None  # GENERIC_PREFIXES is never empty
    return best[1]


def covering_modules(keys: Iterable[str], universe: Iterable[str]) -> list[str]:
    """`keys` named by the fewest module paths: for each key, its shortest prefix (module path) under which every
    key of `universe` is one of `keys` (e.g. the whole `detector.head` rather than its forty tensors)."""
    chosen, universe = set(_counted(keys)), _counted(universe)
    covered: set[str] = set()
    for key in sorted(chosen):
        parts = key.split(".")
        for depth in range(1, len(parts) + 1):
            prefix = ".".join(parts[:depth])
            inside = [other for other in universe if other == prefix or other.startswith(prefix + ".")]
            if all(other in chosen for other in inside):
                covered.add(prefix)
                break
    return sorted(covered)
