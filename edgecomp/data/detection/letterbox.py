"""Square detector inputs from images of any size, and the way back to the original pixels.

Every detector sees S x S images (edgecomp.models.detection.adapter). `letterbox` resizes an image so its longer side
is S, keeping the aspect ratio, and pads the bottom and right with grey (YOLO's 114/255): the top-left corner stays
at the origin, so a box maps to the input by a per-axis scale alone and back by dividing by it. The COCO metrics are
computed in the original image's pixels (the ground truth's frame), so every prediction goes back through
`to_original_boxes`.
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as F

PAD_VALUE = 114 / 255


def letterbox(
    image: torch.Tensor, boxes: torch.Tensor, size: int, content: tuple[int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`image` (3, H, W) in [0, 1] and its `boxes` (M, 4) xyxy in pixels -> the (3, S, S) input, the boxes in the
    input's pixels, and the scale (sx, sy, sx, sy) that took them there. `content`: the (height, width) the image is
    resized to inside the S x S canvas (default: the longer side S, the aspect ratio kept)."""
    height, width = image.shape[-2:]
    new_height, new_width = content if content is not None else content_size(height, width, size)
    if not (1 <= new_height <= size and 1 <= new_width <= size):
        raise ValueError(f"a {new_height} x {new_width} image does not fit a {size} x {size} input")
    if (new_height, new_width) != (height, width):
        image = F.resize(image, [new_height, new_width], antialias=True).clamp_(0.0, 1.0)
    canvas = image.new_full((image.shape[0], size, size), PAD_VALUE)
    canvas[:, :new_height, :new_width] = image
    scale = torch.tensor([new_width / width, new_height / height] * 2, dtype=torch.float32)
    return canvas, boxes * scale, scale


def content_size(height: int, width: int, size: int) -> tuple[int, int]:
    """The (height, width) an H x W image takes in an S x S letterbox: its longer side S, the aspect ratio kept."""
    factor = size / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def to_original_boxes(boxes: torch.Tensor, scale: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Boxes (D, 4) xyxy in the letterboxed input's pixels -> the original image's pixels, clipped to it (a box
    reaching into the padding ends at the image's border)."""
    original = boxes / scale.to(boxes)
    original[:, 0::2] = original[:, 0::2].clamp(0, width)
    original[:, 1::2] = original[:, 1::2].clamp(0, height)
    return original
