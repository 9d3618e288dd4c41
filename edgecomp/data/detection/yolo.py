"""The YOLO / Ultralytics layout (COCO128): `<root>/images/<split>/`, `<root>/labels/<split>/<stem>.txt`, `data.yaml`.

A label line is `class x_center y_center width height`, the four coordinates normalised to [0, 1] by the image's
width and height, so the image sizes are needed to recover pixels: they are read from each image's header (PIL
opens lazily, nothing is decoded). The class ids are YOLO's own (contiguous from 0 for COCO128) and are kept as the
category ids, with every name of data.yaml as a category, so that a class without boxes in a split still exists.

Conventions taken from Ultralytics: an image without a label file, or with an empty one, has no objects; labels
are relative to the stored pixel grid. Departures, both deliberate: a box that pokes out of the image by the rounding
of its 6-digit coordinates (COCO128 has 80 such, by up to 5e-7) is clipped to the image rather than left at -0.0003
px; and a malformed line is an error naming the file and line, not a warning that silently drops the image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from PIL import Image, UnidentifiedImageError

from edgecomp.data.detection.index import DetectionIndex
from edgecomp.data.detection.textfile import numbered_lines
from edgecomp.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
EXPECTED_LAYOUT = (
    "<root>/images/<split>/<stem>.jpg|.png, <root>/labels/<split>/<stem>.txt (one box per line: "
    "`class x_center y_center width height`, normalised to [0, 1]) and <root>/data.yaml with the class names "
    "(`names: {0: person, 1: bicycle, ...}` or `names: [person, bicycle, ...]`)"
)
EXPECTED_LINE = "`class x_center y_center width height` with 5 numbers normalised to [0, 1]"


def read_yolo(
    root: str | os.PathLike, split: str, names: Sequence[str] | Mapping[int, str] | None = None
) -> DetectionIndex:
    """Read one split of a YOLO-layout dataset; `names` replaces data.yaml's class names when given."""
    root = Path(root).absolute()
    if not root.is_dir():
        raise DatasetError(f"yolo: dataset root {root} does not exist. Expected layout: {EXPECTED_LAYOUT}.")
    image_dir, label_dir = root / "images" / split, root / "labels" / split
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            available = sorted(p.name for p in (folder.parent.iterdir() if folder.parent.is_dir() else ()))
            raise DatasetError(
                f"yolo: folder {folder} does not exist (split {split!r}; splits present there: {available or 'none'})."
                f" Expected layout: {EXPECTED_LAYOUT}."
            )
    class_names = _normalise_names(names, "the `names` argument") if names is not None else _names_from_yaml(root)

    image_paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not image_paths:
        raise DatasetError(
            f"yolo: {image_dir} holds no images ({', '.join(IMAGE_SUFFIXES)}). Expected layout: {EXPECTED_LAYOUT}."
        )
    ids = image_ids_from_stems(image_paths)
    index = DetectionIndex(categories=[{"id": class_id, "name": name} for class_id, name in class_names.items()])
    for image_path, image_id in zip(image_paths, ids, strict=True):
        width, height = image_size(image_path)
        index.images.append({"id": image_id, "file_name": str(image_path), "width": width, "height": height})
        label_path = label_dir / f"{image_path.stem}.txt"
        if label_path.is_file():
            for class_id, x, y, w, h in _read_label_file(label_path, class_names, width, height):
                index.add_box(image_id, class_id, x, y, w, h)
    return index


def image_ids_from_stems(paths: Iterable[Path]) -> list[int]:
    """Image ids by DetectionIndex's convention: int(stem) for a numeric stem (000000000139 -> 139), else a running
    number from 1 in the given (sorted) order that skips the ids numeric stems took, so ids are always unique."""
    paths = list(paths)
    numeric: dict[int, Path] = {}
    for path in paths:
        if _is_numeric(path.stem):
            image_id = int(path.stem)
            if image_id in numeric:
                raise DatasetError(
                    f"{numeric[image_id]} and {path} both map to image id {image_id} (ids come from numeric file "
                    "stems); rename one of them."
                )
            numeric[image_id] = path
    ids, running = [], 0
    for path in paths:
        if _is_numeric(path.stem):
            ids.append(int(path.stem))
            continue
        running += 1
        while running in numeric:
            running += 1
        ids.append(running)
    return ids


def _is_numeric(stem: str) -> bool:
    return stem.isascii() and stem.isdigit()


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header; PIL does not decode the pixels for this."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as err:
        raise DatasetError(f"{path}: cannot read the image header ({err}); expected a readable image file.") from err


def _names_from_yaml(root: Path) -> dict[int, str]:
    path = root / "data.yaml"
    if not path.is_file():
        raise DatasetError(
            f"yolo: {path} does not exist and no `names` were given: the class names come from its `names` key. "
            f"Expected layout: {EXPECTED_LAYOUT}."
        )
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise DatasetError(f"{path}: cannot be read as YAML ({err}).") from err
    if not isinstance(config, dict) or "names" not in config:
        raise DatasetError(
            f"{path}: has no `names` key; expected `names: {{0: person, 1: bicycle, ...}}` or `names: [person, ...]`."
        )
    names = _normalise_names(config["names"], str(path))
    declared = config.get("nc")
    if declared is not None and declared != len(names):
        raise DatasetError(f"{path}: `nc` is {declared!r} but `names` lists {len(names)} classes.")
    return names


def _normalise_names(names: Any, source: str) -> dict[int, str]:
    """{class id: name} from a list (ids 0..n-1) or a mapping with integer (or integer-string) keys."""
    expected = "a list of class names or a mapping {class id: name} with integer ids >= 0"
    if isinstance(names, Mapping):
        items = list(names.items())
    elif isinstance(names, Sequence) and not isinstance(names, str):
        items = list(enumerate(names))
    else:
        raise DatasetError(f"{source}: expected `names` to be {expected}, got {names!r}.")
    result: dict[int, str] = {}
    for key, name in items:
        key_text = str(key).strip()
        if isinstance(key, bool) or not key_text.isdigit() or not isinstance(name, str | int | float):
            raise DatasetError(f"{source}: expected `names` to be {expected}, got the entry {key!r}: {name!r}.")
        result[int(key_text)] = str(name)
    if not result:
        raise DatasetError(f"{source}: `names` is empty; expected {expected}.")
    return dict(sorted(result.items()))


def _read_label_file(
    path: Path, class_names: dict[int, str], width: int, height: int
) -> list[tuple[int, float, float, float, float]]:
    """Pixel boxes (class, x, y, w, h) of one label file, clipped to the image; every line is checked."""
    boxes = []
    for line_number, text in numbered_lines(path, "label file"):
        values = _parse_line(text)
        if values is None:
            raise DatasetError(f"{path}:{line_number}: expected {EXPECTED_LINE}, got {text!r}.")
        class_value, x_center, y_center, box_width, box_height = values
        if not class_value.is_integer() or int(class_value) not in class_names:
            raise DatasetError(
                f"{path}:{line_number}: class id {text.split()[0]} is not one of the dataset's classes "
                f"({_describe_ids(class_names)}), got {text!r}."
            )
        if not all(0.0 <= v <= 1.0 for v in (x_center, y_center, box_width, box_height)):
            raise DatasetError(
                f"{path}:{line_number}: expected {EXPECTED_LINE}, got {text!r} (a coordinate outside [0, 1]; "
                "pixel coordinates need converting)."
            )
        if box_width == 0 or box_height == 0:
            raise DatasetError(f"{path}:{line_number}: expected a box of positive width and height, got {text!r}.")
        x1, x2 = max(0.0, (x_center - box_width / 2) * width), min(float(width), (x_center + box_width / 2) * width)
        y1, y2 = (
            max(0.0, (y_center - box_height / 2) * height),
            min(float(height), (y_center + box_height / 2) * height),
        )
        boxes.append((int(class_value), x1, y1, x2 - x1, y2 - y1))
    return boxes


def _parse_line(text: str) -> tuple[float, float, float, float, float] | None:
    fields = text.split()
    if len(fields) != 5:
        return None
    try:
        values = tuple(float(field) for field in fields)
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in values):
        return None
    return values  # type: ignore[return-value]


def _describe_ids(class_names: dict[int, str]) -> str:
    ids = list(class_names)
    if ids == list(range(len(ids))):
        return f"ids 0-{len(ids) - 1}"
    return f"ids {ids}"
