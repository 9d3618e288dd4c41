"""A generated classification set: coloured shapes on textured backgrounds, cached as an image folder.

Class c is a (shape, hue band) pair, so the task needs both shape and colour. Every image is drawn from a
random generator seeded by (seed, split, class, index): the set is byte-identical for a seed whatever the
order of generation, and it is written to a temporary folder that is renamed into place when complete, so an
interrupted generation never leaves a half-written cache behind.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from torchvision.datasets import ImageFolder

from edgecomp.data.cache import generate_once
from edgecomp.data.drawing import SHAPES, add_sensor_noise, draw_shape, hsv_to_rgb, textured_background
from edgecomp.errors import ConfigError, DatasetError

SPLITS = ("train", "val")


class SyntheticClassification:
    """A classification source whose images are generated on first use into `<root>/<settings>/`."""

    def __init__(
        self,
        root: str | os.PathLike,
        num_classes: int = 10,
        image_size: int = 64,
        train_per_class: int = 80,
        val_per_class: int = 20,
        seed: int = 0,
    ) -> None:
        if num_classes < 2:
            raise ConfigError(f"synthetic_cls needs at least 2 classes, got num_classes={num_classes}")
        if image_size < 16:
            raise ConfigError(f"synthetic_cls draws shapes at image_size >= 16, got {image_size}")
        self.num_classes = num_classes
        self.image_size = image_size
        self.per_class = {"train": train_per_class, "val": val_per_class}
        self.seed = seed
        # The folder name holds every setting, so a different setting never reuses a stale cache.
        self.folder = Path(root) / (f"c{num_classes}-px{image_size}-tr{train_per_class}-va{val_per_class}-seed{seed}")
        self.bands = math.ceil(num_classes / len(SHAPES))
        self.shapes_used = math.ceil(num_classes / self.bands)
        self.classes = [self._class_name(c) for c in range(num_classes)]

    def _class_name(self, c: int) -> str:
        return f"{c:03d}_{SHAPES[c % self.shapes_used]}_hue{c // self.shapes_used}"

    def dataset(self, split: str, transform=None) -> ImageFolder:
        if split not in SPLITS:
            raise DatasetError(f"synthetic_cls has splits {SPLITS}, not {split!r}")
        self.ensure_generated()
        return ImageFolder(str(self.folder / split), transform=transform)

    def ensure_generated(self) -> Path:
        return generate_once(self.folder, self._write)

    def _write(self, tmp: Path) -> dict:
        for split_index, split in enumerate(SPLITS):
            for c, name in enumerate(self.classes):
                class_dir = tmp / split / name
                class_dir.mkdir(parents=True)
                for i in range(self.per_class[split]):
                    rng = np.random.default_rng([self.seed, split_index, c, i])
                    self.draw(c, rng).save(class_dir / f"{i:05d}.png", optimize=False)
        return {
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "per_class": self.per_class,
            "seed": self.seed,
            "classes": self.classes,
        }

    def draw(self, c: int, rng: np.random.Generator) -> Image.Image:
        """Draw one image of class `c`: shape `c % shapes_used` in hue band `c // shapes_used`."""
        s = self.image_size
        image = textured_background(rng, s, blur_divisor=32)
        band = c // self.shapes_used
        hue = (band + rng.uniform(0.15, 0.85)) / self.bands
        colour = hsv_to_rgb(hue, rng.uniform(0.7, 1.0), rng.uniform(0.75, 1.0))
        radius = rng.uniform(0.2, 0.38) * s
        cx, cy = rng.uniform(radius, s - radius, size=2)
        angle = rng.uniform(0, 2 * math.pi)
        draw_shape(ImageDraw.Draw(image), SHAPES[c % self.shapes_used], cx, cy, radius, angle, colour)
        return add_sensor_noise(image, rng)
