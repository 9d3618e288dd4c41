"""Build a detector from its config: the adapter class (`family`), its settings, and optionally a local checkpoint.

The model configs name the family by its import path (e.g. edgecomp.models.detection.yolov8.YOLOv8Adapter) and
pass every other key to its constructor, so `model.backbone=resnet50` or `model.scale=s` override the family's own
arguments. Weights: random init, or `pretrained_file`: an edgecomp checkpoint, an Ultralytics `.pt`, a torchvision
detector's or classification backbone's state_dict, for this architecture and any class count (transfer loading,
edgecomp.models.pretrained; read without running pickled code). Nothing is downloaded.
"""

from __future__ import annotations

import os
from typing import Any

from hydra.utils import get_class

from edgecomp.models.detection.adapter import DetectorAdapter
from edgecomp.models.pretrained import load_pretrained


def create_detector(
    family: str, name: str, pretrained_file: str | os.PathLike | None = None, **settings: Any
) -> DetectorAdapter:
    adapter_class = get_class(family)
    if not issubclass(adapter_class, DetectorAdapter):
        raise TypeError(f"model.family={family} is not a DetectorAdapter")
    detector = adapter_class(**settings)
    # nn.Module's __setattr__ is annotated for tensors and modules only; any other value is a plain attribute.
    detector.name = name  # type: ignore[assignment]
    if pretrained_file is not None:
        load_pretrained(detector, pretrained_file)
    return detector
