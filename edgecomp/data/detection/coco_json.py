"""COCO in its official layout: `<root>/annotations/instances_<split>.json` and the images in `<root>/<split>/`.

The json is the ground truth the COCO metrics are defined on, so the reader keeps it as it is: COCO's own image
ids, category ids and names, and each annotation's bbox, area (COCO's `area` is the segmentation's pixel area, and
COCOeval's small/medium/large ranges are defined on it, so it is kept rather than recomputed as w x h) and iscrowd.
Only the annotation ids are renumbered 1..N in file order, as DetectionIndex.add_box numbers them, so that boxes
added to the index later cannot collide with them.

pycocotools trusts its input (an annotation of an unknown image is a bare KeyError deep inside COCOeval), so every
field the index relies on is checked here first, and the first bad entry raises DatasetError naming the file, the
entry and what was expected. Image sizes are taken from the json: opening every image header of train2017 (118k
files) would cost far more than it checks; the image files' existence is checked with one directory listing.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

from edgecomp.data.detection.index import DetectionIndex
from edgecomp.errors import DatasetError

EXPECTED_LAYOUT = (
    "<root>/annotations/instances_<split>.json (COCO instances format: 'images', 'annotations', 'categories') "
    "and the images in <root>/<split>/ (or <root>/images/<split>/), e.g. <root>/annotations/instances_val2017.json "
    "and <root>/val2017/000000000139.jpg"
)


def read_coco(root: str | os.PathLike, split: str) -> DetectionIndex:
    """Read `<root>/annotations/instances_<split>.json` and check that every image it names is on disk."""
    root = Path(root).absolute()
    if not root.is_dir():
        raise DatasetError(f"coco: dataset root {root} does not exist. Expected layout: {EXPECTED_LAYOUT}.")
    annotation_file = root / "annotations" / f"instances_{split}.json"
    if not annotation_file.is_file():
        raise DatasetError(
            f"coco: annotation file {annotation_file} does not exist (split {split!r}). "
            f"Expected layout: {EXPECTED_LAYOUT}."
        )
    image_dir = _image_dir(root, split)
    data = _load_json(annotation_file)
    index = index_from_coco_dict(data, image_dir, source=str(annotation_file))
    _check_images_exist(index, image_dir, annotation_file)
    return index


def index_from_coco_dict(data: Any, image_dir: Path, source: str) -> DetectionIndex:
    """A DetectionIndex from a parsed COCO instances dictionary; file names become absolute under `image_dir`.

    `source` names the file in error messages. Every entry is validated before the index is returned.
    """
    if not isinstance(data, dict):
        raise DatasetError(
            f"{source}: expected a JSON object with the lists 'images', 'annotations' and 'categories', "
            f"got {type(data).__name__}."
        )
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            found = "missing" if key not in data else f"a {type(data[key]).__name__}"
            raise DatasetError(
                f"{source}: expected '{key}' to be a list (COCO instances format), but it is {found}. "
                f"Expected layout: {EXPECTED_LAYOUT}."
            )

    index = DetectionIndex()
    for position, category in enumerate(data["categories"]):
        where = f"{source}: categories[{position}]"
        _require_dict(category, where, '{"id": int, "name": str}')
        category_id = _require_int(category, "id", where)
        name = category.get("name")
        if not isinstance(name, str):
            raise DatasetError(f"{where}: expected 'name' to be a string, got {name!r}.")
        entry = {"id": category_id, "name": name}
        if isinstance(category.get("supercategory"), str):
            entry["supercategory"] = category["supercategory"]
        index.categories.append(entry)
    _require_unique([c["id"] for c in index.categories], source, "category id")

    for position, image in enumerate(data["images"]):
        where = f"{source}: images[{position}]"
        _require_dict(image, where, '{"id": int, "file_name": str, "width": int, "height": int}')
        image_id = _require_int(image, "id", where)
        file_name = image.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise DatasetError(f"{where}: expected 'file_name' to be a non-empty string, got {file_name!r}.")
        width, height = (_require_int(image, key, where) for key in ("width", "height"))
        if width <= 0 or height <= 0:
            raise DatasetError(f"{where}: expected a positive 'width' and 'height', got {width} x {height}.")
        index.images.append({"id": image_id, "file_name": str(image_dir / file_name), "width": width, "height": height})
    _require_unique([i["id"] for i in index.images], source, "image id")

    image_ids = {image["id"] for image in index.images}
    category_ids = {category["id"] for category in index.categories}
    for position, annotation in enumerate(data["annotations"]):
        where = f"{source}: annotations[{position}]"
        _require_dict(annotation, where, '{"image_id", "category_id", "bbox": [x, y, w, h], "iscrowd"}')
        if "id" in annotation:
            where += f" (id {annotation['id']})"
        image_id = _require_int(annotation, "image_id", where)
        if image_id not in image_ids:
            raise DatasetError(f"{where}: image_id {image_id} is not among the file's images.")
        category_id = _require_int(annotation, "category_id", where)
        if category_id not in category_ids:
            raise DatasetError(
                f"{where}: category_id {category_id} is not among the file's categories ({sorted(category_ids)})."
            )
        bbox = annotation.get("bbox")
        if not (
            isinstance(bbox, list) and len(bbox) == 4 and all(_is_finite_number(v) for v in bbox) and min(bbox[2:]) >= 0
        ):
            raise DatasetError(
                f"{where}: expected 'bbox' to be [x, y, width, height]: 4 finite numbers in pixels with width and "
                f"height >= 0, got {bbox!r}."
            )
        iscrowd = annotation.get("iscrowd", 0)
        if iscrowd not in (0, 1) or isinstance(iscrowd, bool):
            raise DatasetError(f"{where}: expected 'iscrowd' to be 0 or 1, got {iscrowd!r}.")
        x, y, width, height = bbox
        index.add_box(image_id, category_id, x, y, width, height, iscrowd=iscrowd)
        area = annotation.get("area")
        if area is not None:
            if not _is_finite_number(area) or area < 0:
                raise DatasetError(f"{where}: expected 'area' to be a number >= 0 (pixels), got {area!r}.")
            index.annotations[-1]["area"] = float(area)
    return index


def _image_dir(root: Path, split: str) -> Path:
    candidates = (root / split, root / "images" / split)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise DatasetError(
        f"coco: image folder {candidates[0]} (or {candidates[1]}) does not exist (split {split!r}). "
        f"Expected layout: {EXPECTED_LAYOUT}."
    )


def _load_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read the annotation file ({err}).") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"{path}:{err.lineno}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); expected a "
            "COCO instances file: a JSON object with the lists 'images', 'annotations' and 'categories'."
        ) from err


def _check_images_exist(index: DetectionIndex, image_dir: Path, annotation_file: Path) -> None:
    """One listing of the image folder instead of one stat per image (COCO train2017 has 118k images)."""
    present = set(os.listdir(image_dir))
    missing = []
    for image in index.images:
        path = Path(image["file_name"])
        found = path.name in present if path.parent == image_dir else path.is_file()
        if not found:
            missing.append(path)
    if missing:
        raise DatasetError(
            f"coco: {len(missing)} image(s) listed in {annotation_file} are missing, the first being {missing[0]}. "
            f"Expected layout: {EXPECTED_LAYOUT}."
        )


def _require_dict(value: Any, where: str, expected: str) -> None:
    if not isinstance(value, dict):
        raise DatasetError(f"{where}: expected an object {expected}, got {value!r}.")


def _require_int(entry: dict[str, Any], key: str, where: str) -> int:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise DatasetError(f"{where}: expected {key!r} to be an integer, got {value!r}.")
    return int(value)


def _require_unique(ids: list[int], source: str, what: str) -> None:
    seen: set[int] = set()
    for value in ids:
        if value in seen:
            raise DatasetError(f"{source}: {what} {value} occurs more than once; ids must be unique.")
        seen.add(value)


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
