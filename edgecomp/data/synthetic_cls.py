"""A generated classification set: coloured shapes on textured backgrounds, cached as an image folder.

Class c is a (shape, hue band) pair, so the task needs both shape and colour. Every image is drawn from a
random generator seeded by (seed, split, class, index): the set is byte-identical for a seed whatever the
order of generation, and it is written to a temporary folder that is renamed into place when complete, so an
interrupted generation never leaves a half-written cache behind.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from torchvision.datasets import ImageFolder

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond", "star", "bars")
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
            raise ValueError(f"synthetic_cls needs at least 2 classes, got num_classes={num_classes}")
        if image_size < 16:
            raise ValueError(f"synthetic_cls draws shapes at image_size >= 16, got {image_size}")
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
            raise ValueError(f"synthetic_cls has splits {SPLITS}, not {split!r}")
        self.ensure_generated()
        return ImageFolder(str(self.folder / split), transform=transform)

    def ensure_generated(self) -> Path:
        if (self.folder / "meta.json").exists():
            return self.folder
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.folder.with_name(f".{self.folder.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            for split_index, split in enumerate(SPLITS):
                for c, name in enumerate(self.classes):
                    class_dir = tmp / split / name
                    class_dir.mkdir(parents=True)
                    for i in range(self.per_class[split]):
                        rng = np.random.default_rng([self.seed, split_index, c, i])
                        self.draw(c, rng).save(class_dir / f"{i:05d}.png", optimize=False)
            meta = {
                "num_classes": self.num_classes,
                "image_size": self.image_size,
                "per_class": self.per_class,
                "seed": self.seed,
                "classes": self.classes,
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            try:
                os.rename(tmp, self.folder)
            except OSError:
                # Another process finished the same set first: theirs is identical, keep it.
                if not (self.folder / "meta.json").exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self.folder

    def draw(self, c: int, rng: np.random.Generator) -> Image.Image:
        """Draw one image of class `c`: shape `c % shapes_used` in hue band `c // shapes_used`."""
        s = self.image_size
        # Background: a smooth random texture in muted colours (blurred noise), so colour alone is not trivial.
        noise = rng.integers(60, 190, size=(s // 8 + 1, s // 8 + 1, 3), dtype=np.uint8)
        background = Image.fromarray(noise).resize((s, s), Image.BILINEAR)
        image = background.filter(ImageFilter.GaussianBlur(radius=max(1, s // 32)))
        draw = ImageDraw.Draw(image)

        band = c // self.shapes_used
        hue = (band + rng.uniform(0.15, 0.85)) / self.bands
        colour = _hsv_to_rgb(hue, rng.uniform(0.7, 1.0), rng.uniform(0.75, 1.0))
        radius = rng.uniform(0.2, 0.38) * s
        cx, cy = rng.uniform(radius, s - radius, size=2)
        angle = rng.uniform(0, 2 * math.pi)
        _draw_shape(draw, SHAPES[c % self.shapes_used], cx, cy, radius, angle, colour)

        pixels = np.asarray(image, dtype=np.int16) + rng.normal(0, 8, size=(s, s, 3)).astype(np.int16)
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def _polygon(cx, cy, radii, angle):
    n = len(radii)
    return [
        (cx + r * math.cos(angle + 2 * math.pi * k / n), cy + r * math.sin(angle + 2 * math.pi * k / n))
        for k, r in enumerate(radii)
    ]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx, cy, r, angle, colour) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=max(2, int(r * 0.3)))
    elif shape == "square":
        draw.polygon(_polygon(cx, cy, [r] * 4, angle), fill=colour)
    elif shape == "diamond":
        draw.polygon(_polygon(cx, cy, [r, r * 0.5] * 2, angle), fill=colour)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy, [r] * 3, angle), fill=colour)
    elif shape == "star":
        draw.polygon(_polygon(cx, cy, [r, r * 0.4] * 5, angle), fill=colour)
    elif shape == "cross":
        w = max(2, int(r * 0.35))
        for a in (angle, angle + math.pi / 2):
            dx, dy = r * math.cos(a), r * math.sin(a)
            draw.line((cx - dx, cy - dy, cx + dx, cy + dy), fill=colour, width=w)
    elif shape == "bars":
        w = max(2, int(r * 0.22))
        dx, dy = r * math.cos(angle), r * math.sin(angle)
        px, py = -dy, dx  # perpendicular: three parallel bars
        for k in (-0.6, 0.0, 0.6):
            ox, oy = px * k, py * k
            draw.line((cx - dx + ox, cy - dy + oy, cx + dx + ox, cy + dy + oy), fill=colour, width=w)
    else:  # pragma: no cover - SHAPES and this function are kept in step
        raise ValueError(shape)
