"""Starting a model from the weights people have (`model.pretrained_file`): transfer loading, and what it loaded.

The file may come from edgecomp, Ultralytics, torchvision or timm (edgecomp.models.weight_files reads them all
without running pickled code), for this architecture with another class count, or be a classification backbone
for a detector. Every tensor that pairs with the model in name and shape is loaded (edgecomp.models.
weight_matching); a tensor whose shape differs (the classifier or detection head of another class count) keeps the
model's own initialisation, drawn with the run's seed, as do the model's parts the file lacks (a detector's FPN and
head, given ImageNet backbone weights).

What a file must give: at least MIN_BACKBONE_SHARE of the backbone's weights. A file for this architecture gives
all of them; one for another architecture (another YOLOv8 scale, another ResNet depth) pairs few names or shapes,
and is refused, naming the first keys that do not pair, rather than training from a silently random backbone.

The model keeps what was loaded as `pretrained_weights`, which the run's record stores as `weights`: the file and
its fingerprint, how it was read and renamed, and which modules were re-initialised, left at their initialisation,
or ignored in the file (every other tensor of the model was loaded from it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch.nn as nn

from edgecomp.errors import CheckpointError
from edgecomp.models.weight_files import read_weight_file
from edgecomp.models.weight_matching import WeightMatch, covering_modules, match_weights

# The least share of the backbone's weights (by element count) a pretrained file must give. A file of this
# architecture gives 1.0; the slack admits a backbone whose stem was adapted (another input channel count).
MIN_BACKBONE_SHARE = 0.9


def backbone_keys(model: nn.Module, keys: list[str]) -> list[str]:
    """Those of `keys` (`model`'s tensors) in its backbone: a detector's own (`backbone_prefixes`), a timm
    classifier's everything but its classifier (timm's `pretrained_cfg["classifier"]`), else every key."""
    prefixes = getattr(model, "backbone_prefixes", None)
    if prefixes:
        return [key for key in keys if key.startswith(tuple(prefixes))]
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    if classifier:
        heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)
        return [key for key in keys if not key.startswith(tuple(f"{head}." for head in heads))]
    return keys


def model_name(model: nn.Module) -> str:
    """What the configs call `model`: a detector's `name`, a timm model's architecture, else its class."""
    architecture = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    return getattr(model, "name", None) or architecture or type(model).__name__


def loaded_share(match: WeightMatch, keys: list[str]) -> float:
    """The share of the elements of `keys` (of the model's tensors `match` was paired with) that `match` loads."""
    total = sum(match.expected[key].numel() for key in keys)
    return sum(match.expected[key].numel() for key in keys if key in match.loadable) / total if total else 0.0


def load_pretrained(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """`model` with every tensor of `path` that fits it (see the module docstring); refused when the file gives
    less than MIN_BACKBONE_SHARE of the backbone. Sets `model.pretrained_weights` (the record's `weights`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model.pretrained_file={path} does not exist")
    weights = read_weight_file(path)
    match = match_weights(model, weights)
    backbone = backbone_keys(model, list(match.expected))
    share = loaded_share(match, backbone)
    if share < MIN_BACKBONE_SHARE:
        unpaired = [key for key in backbone if key not in match.loadable]
        raise CheckpointError(
            f"model.pretrained_file={path} does not fit model {model_name(model)}: it "
            f"gives {share:.0%} of the backbone's weights (at least {MIN_BACKBONE_SHARE:.0%} expected; is it for "
            f"another architecture?); first backbone keys it does not give: {', '.join(unpaired[:3])} "
            f"({match.problems()})"
        )
    model.load_state_dict(match.loadable, strict=False)
    # nn.Module's __setattr__ is annotated for tensors and modules only; any other value is a plain attribute.
    model.pretrained_weights = weights_report(match, share)  # type: ignore[assignment]
    return model


def weights_report(match: WeightMatch, backbone_share: float) -> dict[str, Any]:
    """What the record's `weights` says of a pretrained start (see the module docstring)."""
    keys = list(match.expected)
    return {
        "file": str(match.file.path),
        "sha256": match.file.sha256,
        "format": match.file.format,
        "renamed": {"file": match.mapping[0], "model": match.mapping[1]},
        "loaded_tensors": len(match.loadable),
        "loaded_share": round(loaded_share(match, keys), 4),
        "backbone_share": round(backbone_share, 4),
        "reinitialised": covering_modules(match.misshapen, keys),
        "left_at_init": covering_modules(match.missing, keys),
        "ignored": covering_modules(match.unused, match.file.tensors),
    }
