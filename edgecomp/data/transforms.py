"""Image transforms for classification: resize to the evaluated input size and normalise as timm models expect."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AUGMENTS = ("none", "light", "standard")


def _to_normalised_tensor(mean, std) -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def eval_transform(image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    """Deterministic: resize the short side, centre-crop to `image_size`."""
    return v2.Compose(
        [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size), *_to_normalised_tensor(mean, std)]
    )


def train_transform(image_size: int, augment: str = "standard", mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    """`none`: the eval transform; `light`: small crops and flips (generated data); `standard`: RandomResizedCrop."""
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    if augment == "none":
        return eval_transform(image_size, mean, std)
    scale = (0.7, 1.0) if augment == "light" else (0.25, 1.0)
    return v2.Compose(
        [
            v2.RandomResizedCrop(image_size, scale=scale, antialias=True),
            v2.RandomHorizontalFlip(),
            *_to_normalised_tensor(mean, std),
        ]
    )
