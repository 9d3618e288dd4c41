"""Drawing primitives shared by the generated datasets (synthetic_cls, synthetic_sod)."""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond", "star", "bars")


def hsv_to_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def textured_background(rng: np.random.Generator, size: int, blur_divisor: int) -> Image.Image:
    """A smooth random texture in muted colours (blurred noise), so that colour alone does not give objects away."""
    noise = rng.integers(60, 190, size=(size // 8 + 1, size // 8 + 1, 3), dtype=np.uint8)
    background = Image.fromarray(noise).resize((size, size), Image.Resampling.BILINEAR)
    return background.filter(ImageFilter.GaussianBlur(radius=max(1, size // blur_divisor)))


def add_sensor_noise(image: Image.Image, rng: np.random.Generator, sigma: float = 8.0) -> Image.Image:
    pixels = np.asarray(image, dtype=np.int16) + rng.normal(0, sigma, size=(image.height, image.width, 3)).astype(
        np.int16
    )
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _polygon(cx, cy, radii, angle):
    n = len(radii)
    return [
        (cx + r * math.cos(angle + 2 * math.pi * k / n), cy + r * math.sin(angle + 2 * math.pi * k / n))
        for k, r in enumerate(radii)
    ]


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx, cy, r, angle, colour) -> None:
    """Draw `shape` centred at (cx, cy) with outer radius `r`, rotated by `angle`, filled with `colour`."""
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
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")
