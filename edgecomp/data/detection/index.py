"""A detection dataset in COCO's terms, whatever format it was read from.

Conventions every reader follows (the detection issue fixes them):
- images: `id` (int; the integer file stem where the stem is numeric), `file_name` (absolute path),
  `width`, `height` (pixels);
- annotations: `id` (int, unique), `image_id`, `category_id` (the dataset's own class ids), `bbox` as
  [x, y, w, h] in pixels, `area` = w x h in pixels, `iscrowd` (1 = an ignore region: a detection inside it is
  not a false positive and leaving it undetected is not a miss);
- categories: `id`, `name`.

pycocotools matches a crowd region only against detections of its own category, so a category-agnostic
ignore region (VisDrone's category 0) is stored as one crowd annotation per category (`ignore_region`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class DetectionIndex:
    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    categories: list[dict[str, Any]] = field(default_factory=list)

    def add_box(
        self, image_id: int, category_id: int, x: float, y: float, w: float, h: float, iscrowd: int = 0
    ) -> None:
        self.annotations.append(
            {
                "id": len(self.annotations) + 1,
                "image_id": image_id,
                "category_id": category_id,
                "bbox": [float(x), float(y), float(w), float(h)],
                "area": float(w) * float(h),
                "iscrowd": iscrowd,
            }
        )

    def ignore_region(self, image_id: int, x: float, y: float, w: float, h: float) -> None:
        """A region where no detection of any category counts (one crowd box per category, see above)."""
        for category in self.categories:
            self.add_box(image_id, category["id"], x, y, w, h, iscrowd=1)

    def to_coco(self) -> dict[str, Any]:
        """The dataset as a COCO `instances` dictionary (what pycocotools.coco.COCO loads)."""
        return {
            "info": {"description": "edgecomp detection index"},
            "images": self.images,
            "annotations": self.annotations,
            "categories": self.categories,
        }

    def write_coco(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.to_coco()))
        os.replace(tmp, path)
        return path

    def annotations_by_image(self) -> dict[int, list[dict[str, Any]]]:
        grouped: dict[int, list[dict[str, Any]]] = {image["id"]: [] for image in self.images}
        for annotation in self.annotations:
            grouped[annotation["image_id"]].append(annotation)
        return grouped
