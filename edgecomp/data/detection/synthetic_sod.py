"""A generated small-object detection set: coloured shapes on textured backgrounds, cached in COCO's format.

The class of an object is its shape (its colour is random, so colour says nothing about the class). A share
`small_share` of the objects is COCO-"small" (both sides under 32 px, so the area is under 32 x 32), the rest
medium or large (area at least 32 x 32): the share is what makes the set a small-object benchmark, so every
object's size class is drawn first and its drawn extent is checked against it.

Sizes are those of the detector's input, `image_size` px. With `render_scale` r > 1 the images are drawn r times
larger (`image_size` x r px: every length, the texture and the shapes, scaled by r; the sensor noise per rendered
pixel) and the detector's letterbox downsamples them with antialiasing: a small object is a few pixels for a
detector at `image_size` and r times that for a teacher at r x `image_size`, which sees detail the student's input
has lost. The size classes stay judged at `image_size`: an object is small when both sides are under 32 r rendered
px, and the COCO metrics judge areas in the same way (their `size_scale`, set to r by the dataset's config).

Objects may overlap a little but never hide one another: a new object may cover at most MAX_COVERED of its own
pixels' worth of earlier objects, and every earlier object keeps at least MIN_VISIBLE of its pixels. The box is the
tight extent of the shape's pixels (measured on its rendered mask, so it is exact for every shape and already clipped
to the image).

Every image is drawn from a random generator seeded by (seed, split, index), so the set is byte-identical for a
seed; it is written to a temporary folder renamed into place when complete (as edgecomp.data.synthetic_cls does),
so an interrupted generation never leaves a half-written cache, and it is reused when present. The layout is
`<root>/<settings>/images/<split>/<id>.png` with `<root>/<settings>/annotations/instances_<split>.json`, which
edgecomp.data.detection.coco_json.read_coco reads.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from edgecomp.data.cache import generate_once
from edgecomp.data.detection.coco_json import read_coco
from edgecomp.data.detection.index import DetectionIndex
from edgecomp.data.drawing import SHAPES, add_sensor_noise, draw_shape, hsv_to_rgb, textured_background
from edgecomp.errors import ConfigError, DatasetError

SPLITS = ("train", "val")
SMALL_SIDE = 32
"""COCO's small/medium boundary: area < 32 x 32."""
SMALL_RADIUS = (5.0, 15.0)
"""The outer radius of a small object's shape, in input px: the default of `small_radius`."""
LARGE_RADIUS_MIN = 22.0
MAX_COVERED = 0.25
MIN_VISIBLE = 0.6
PLACEMENT_ATTEMPTS = 60
MIN_IMAGE_SIZE = 96


class SyntheticDetection:
    """A detection source whose images are generated on first use into `<root>/<settings>/`."""

    def __init__(
        self,
        root: str | os.PathLike,
        num_classes: int = 4,
        image_size: int = 256,
        train_images: int = 200,
        val_images: int = 50,
        objects_per_image: Sequence[int] = (2, 8),
        small_share: float = 0.5,
        seed: int = 0,
        render_scale: float = 1.0,
        small_radius: Sequence[float] = SMALL_RADIUS,
    ) -> None:
        if not 1 <= num_classes <= len(SHAPES):
            raise ConfigError(f"synthetic_sod has {len(SHAPES)} shapes, so 1-{len(SHAPES)} classes; got {num_classes}")
        if image_size < MIN_IMAGE_SIZE:
            raise ConfigError(
                f"synthetic_sod needs image_size >= {MIN_IMAGE_SIZE} for its large objects, got {image_size}"
            )
        if min(train_images, val_images) < 1:
            raise ConfigError(f"synthetic_sod needs at least 1 image per split, got {train_images}, {val_images}")
        low, high = (int(n) for n in objects_per_image)
        if not 1 <= low <= high:
            raise ConfigError(
                f"synthetic_sod: objects_per_image must be (min, max) with 1 <= min <= max, got {low, high}"
            )
        if not 0.0 <= small_share <= 1.0:
            raise ConfigError(f"synthetic_sod: small_share must be in [0, 1], got {small_share}")
        render_size = image_size * render_scale
        if render_scale < 1 or render_size != round(render_size):
            raise ConfigError(
                f"synthetic_sod: render_scale must be >= 1 and make a whole number of pixels (image_size "
                f"{image_size} x render_scale), got {render_scale}"
            )
        smallest, largest = (float(r) for r in small_radius)
        if not 1.0 <= smallest <= largest < SMALL_SIDE / 2:
            raise ConfigError(
                f"synthetic_sod: small_radius must be (min, max) px with 1 <= min <= max < {SMALL_SIDE // 2} (a small "
                f"object's sides are under {SMALL_SIDE} px), got {list(small_radius)}"
            )
        self.num_classes = num_classes
        self.image_size = image_size
        self.images_per_split = {"train": train_images, "val": val_images}
        self.objects_per_image = (low, high)
        self.small_share = float(small_share)
        self.seed = seed
        self.render_scale = float(render_scale)
        self.render_size = round(render_size)
        self.small_radius = (smallest, largest)
        self.large_radius = (LARGE_RADIUS_MIN, max(LARGE_RADIUS_MIN + 2, 0.2 * image_size))
        self.classes = list(SHAPES[:num_classes])
        # The folder name holds every setting, so a different setting never reuses a stale cache.
        self.folder = Path(root) / (
            f"c{num_classes}-px{image_size}-tr{train_images}-va{val_images}-obj{low}_{high}"
            f"-small{self.small_share:g}-seed{seed}"
            + (f"-r{smallest:g}_{largest:g}" if self.small_radius != SMALL_RADIUS else "")
            + (f"-render{self.render_scale:g}" if self.render_scale != 1 else "")
        )

    def index(self, split: str) -> DetectionIndex:
        if split not in SPLITS:
            raise DatasetError(f"synthetic_sod has splits {SPLITS}, not {split!r}")
        self.ensure_generated()
        return read_coco(self.folder, split)

    def ensure_generated(self) -> Path:
        return generate_once(self.folder, self._write)

    def _write(self, tmp: Path) -> dict:
        counts = {}
        for split_index, split in enumerate(SPLITS):
            image_dir = tmp / "images" / split
            image_dir.mkdir(parents=True)
            index = DetectionIndex(categories=[{"id": c + 1, "name": n} for c, n in enumerate(self.classes)])
            for i in range(self.images_per_split[split]):
                image_id = i + 1
                rng = np.random.default_rng([self.seed, split_index, i])
                image, objects = self.draw(rng)
                file_name = f"{image_id:06d}.png"
                image.save(image_dir / file_name, optimize=False)
                index.images.append(
                    {"id": image_id, "file_name": file_name, "width": image.width, "height": image.height}
                )
                for class_index, (x, y, w, h) in objects:
                    index.add_box(image_id, class_index + 1, x, y, w, h)
            index.write_coco(tmp / "annotations" / f"instances_{split}.json")
            small = sum(a["area"] < (SMALL_SIDE * self.render_scale) ** 2 for a in index.annotations)
            counts[split] = {"images": len(index.images), "objects": len(index.annotations), "small": small}
        return {
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "images_per_split": self.images_per_split,
            "objects_per_image": list(self.objects_per_image),
            "small_share": self.small_share,
            "seed": self.seed,
            "render_scale": self.render_scale,
            "render_size": self.render_size,
            "small_radius": list(self.small_radius),
            "classes": self.classes,
            "counts": counts,
        }

    def draw(self, rng: np.random.Generator) -> tuple[Image.Image, list[tuple[int, tuple[int, int, int, int]]]]:
        """One image and its objects as (class index, (x, y, w, h) in pixels); placement is retried until an
        object has its size class and the overlap limits hold, and an object that cannot be placed is left out."""
        s = self.render_size
        image = textured_background(rng, s, blur_divisor=64)

        low, high = self.objects_per_image
        covered = np.zeros((s, s), dtype=bool)
        placed: list[tuple[np.ndarray, int]] = []  # (still-visible pixels, full pixel count) of each earlier object
        objects = []
        for _ in range(int(rng.integers(low, high + 1))):
            small = bool(rng.random() < self.small_share)
            class_index = int(rng.integers(self.num_classes))
            colour = hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0))
            for _attempt in range(PLACEMENT_ATTEMPTS):
                mask_image, mask, box = self._shape_mask(class_index, small, rng)
                if box is None:
                    continue
                pixels = int(mask.sum())
                if np.count_nonzero(mask & covered) > MAX_COVERED * pixels:
                    continue
                if any(np.count_nonzero(visible & ~mask) < MIN_VISIBLE * full for visible, full in placed):
                    continue
                for visible, _full in placed:
                    visible &= ~mask
                placed.append((mask.copy(), pixels))
                covered |= mask
                image.paste(colour, mask=mask_image)
                objects.append((class_index, box))
                break

        return add_sensor_noise(image, rng), objects

    def _shape_mask(
        self, class_index: int, small: bool, rng: np.random.Generator
    ) -> tuple[Image.Image, np.ndarray, tuple[int, int, int, int] | None]:
        """A random pose of the shape as a mask (at the rendered size), with its tight box in rendered px, or box None
        if it misses its size class (judged at the input size)."""
        s, r = self.render_size, self.render_scale
        radius = rng.uniform(*(self.small_radius if small else self.large_radius)) * r
        cx, cy = rng.uniform(radius, s - radius, size=2)
        angle = rng.uniform(0, 2 * math.pi)
        mask_image = Image.new("L", (s, s), 0)
        draw_shape(ImageDraw.Draw(mask_image), SHAPES[class_index], cx, cy, radius, angle, 255)
        mask = np.asarray(mask_image) > 0
        extent = mask_image.getbbox()
        if extent is None:
            return mask_image, mask, None
        left, top, right, bottom = extent
        w, h = right - left, bottom - top
        fits = max(w, h) < SMALL_SIDE * r if small else w * h >= (SMALL_SIDE * r) ** 2
        return mask_image, mask, (left, top, w, h) if fits else None


def read_synthetic_sod(root: str | os.PathLike, split: str, **settings) -> DetectionIndex:
    """One split of the generated set with these settings (generated on first use, then read from the cache)."""
    return SyntheticDetection(root, **settings).index(split)
