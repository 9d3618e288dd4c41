"""A DetectionIndex served as a torch Dataset in the form torchvision's detectors take.

An item is `(image, target)`: the image a float32 (3, H, W) tensor in [0, 1] (RGB), the target a dict with `boxes`
(float32 (N, 4), x1, y1, x2, y2 in pixels), `labels` (int64 category ids), `iscrowd` (int64), `area` (float32,
the index's area) and `image_id` (int). Ignore regions (iscrowd = 1) are included and flagged, not dropped: the
evaluation needs them, and a training loop drops them itself (torchvision's references train on iscrowd = 0 only).
The category ids are the dataset's own: torchvision's detectors reserve label 0 for the background, so a set with
a class 0 (YOLO's numbering) must be shifted by the model wrapper, not here, or the COCO metrics would not match.

`transform(image, target) -> (image, target)` runs on the item with the image wrapped as a
`torchvision.tv_tensors.Image` and the boxes as `tv_tensors.BoundingBoxes` (XYXY), so the torchvision.transforms.v2
detection transforms (flips, crops, resizes) move the boxes with the pixels; the result is unwrapped back to plain
tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from edgecomp.data.detection.index import DetectionIndex
from edgecomp.errors import DatasetError


class DetectionDataset(Dataset):
    """The images of `index` in its order, each decoded on access (the index itself holds only the annotations)."""

    def __init__(self, index: DetectionIndex, transform=None) -> None:
        self.index = index
        self.transform = transform
        self.images = list(index.images)
        by_image = index.annotations_by_image()
        self.annotations = [by_image[image["id"]] for image in self.images]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, dict[str, Any]]:
        record = self.images[position]
        image = self._load_image(record)
        annotations = self.annotations[position]
        boxes = torch.tensor(
            [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in annotations)], dtype=torch.float32
        ).reshape(-1, 4)
        target: dict[str, Any] = {
            "boxes": boxes,
            "labels": torch.tensor([a["category_id"] for a in annotations], dtype=torch.int64),
            "iscrowd": torch.tensor([a["iscrowd"] for a in annotations], dtype=torch.int64),
            "area": torch.tensor([a["area"] for a in annotations], dtype=torch.float32),
            "image_id": int(record["id"]),
        }
        if self.transform is not None:
            height, width = image.shape[-2:]
            target["boxes"] = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width))
            image, target = self.transform(tv_tensors.Image(image), target)
            image = image.as_subclass(torch.Tensor)
            target = {k: v.as_subclass(torch.Tensor) if isinstance(v, torch.Tensor) else v for k, v in target.items()}
        return image, target

    @staticmethod
    def _load_image(record: dict[str, Any]) -> torch.Tensor:
        path = Path(record["file_name"])
        try:
            with Image.open(path) as pil_image:
                rgb = pil_image.convert("RGB")
        except (OSError, UnidentifiedImageError) as err:
            raise DatasetError(f"{path}: cannot read the image (image id {record['id']}): {err}") from err
        if rgb.size != (record["width"], record["height"]):
            raise DatasetError(
                f"{path}: the image is {rgb.width} x {rgb.height} px but its index entry (image id {record['id']}) "
                f"says {record['width']} x {record['height']}; the boxes would not fit the pixels."
            )
        return F.to_dtype(F.pil_to_tensor(rgb), torch.float32, scale=True)


def collate(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """(list of images, list of targets): torchvision's detectors take images of different sizes as a list."""
    images, targets = zip(*batch, strict=True) if batch else ((), ())
    return list(images), list(targets)
