"""VisDrone-DET (`<root>/images/*.jpg`, `<root>/annotations/<stem>.txt`) and ScaleKD's four-patch training split.

An annotation line is `x,y,w,h,score,category,truncation,occlusion` in pixels. Category 0 marks an "ignored
region" (a crowd or an area the annotators skipped): the official toolkit drops every detection inside it and
counts none of it as a miss, whatever the detection's class, so it becomes a category-agnostic ignore region
(DetectionIndex.ignore_region). Category 11, "others", is not among the 10 classes the official toolkit scores; by
default (`others="ignore"`) it is an ignore region too, so a detector is neither rewarded nor punished for it; with
`others="class"` it is an 11th category. Which boxes are ignored follows the category alone, as the toolkit does;
the `score` field (0 for ignored regions in the ground truth) is only checked to be a number.

ScaleKD trains on VisDrone images cut into four non-overlapping quadrants (the originals are up to 2000 x 1500 px,
with objects of a few pixels): `split_into_patches` writes the patches once (a cache keyed on the file name and
size) and returns the index of the patches.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from PIL import Image

from edgecomp.data.detection.index import DetectionIndex
from edgecomp.data.detection.textfile import numbered_lines
from edgecomp.data.detection.yolo import image_ids_from_stems, image_size
from edgecomp.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CATEGORIES = (
    "pedestrian",
    "people",
    "bicycle",
    "car",
    "van",
    "truck",
    "tricycle",
    "awning-tricycle",
    "bus",
    "motor",
)
"""VisDrone's scored classes, category ids 1-10 in this order."""
IGNORED_REGION, OTHERS = 0, 11
OTHERS_MODES = ("ignore", "class")
EXPECTED_LAYOUT = (
    "<root>/images/<stem>.jpg and <root>/annotations/<stem>.txt (one line per box: "
    "`x,y,w,h,score,category,truncation,occlusion` in pixels), as in VisDrone2019-DET-train/"
)
EXPECTED_LINE = (
    "8 comma-separated numbers `x,y,width,height,score,category,truncation,occlusion` with width, height > 0 "
    "(pixels) and an integer category 0-11"
)
QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")


def read_visdrone(root: str | os.PathLike, others: str = "ignore") -> DetectionIndex:
    """Read one VisDrone-DET split folder (e.g. VisDrone2019-DET-val); every annotation file is checked first."""
    if others not in OTHERS_MODES:
        raise DatasetError(f"visdrone: others must be one of {OTHERS_MODES}, got {others!r}.")
    root = Path(root).absolute()
    if not root.is_dir():
        raise DatasetError(f"visdrone: dataset root {root} does not exist. Expected layout: {EXPECTED_LAYOUT}.")
    image_dir, annotation_dir = root / "images", root / "annotations"
    for folder in (image_dir, annotation_dir):
        if not folder.is_dir():
            raise DatasetError(f"visdrone: folder {folder} does not exist. Expected layout: {EXPECTED_LAYOUT}.")

    image_paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not image_paths:
        raise DatasetError(f"visdrone: {image_dir} holds no .jpg images. Expected layout: {EXPECTED_LAYOUT}.")
    # VisDrone ships one annotation file per image, empty ones included: a missing file is a broken copy, and
    # reading it as "no objects" would turn every detection on that image into a false positive.
    missing = [
        annotation_dir / f"{p.stem}.txt" for p in image_paths if not (annotation_dir / f"{p.stem}.txt").is_file()
    ]
    if missing:
        raise DatasetError(
            f"visdrone: {len(missing)} image(s) have no annotation file, the first being {missing[0]}. "
            f"Expected layout: {EXPECTED_LAYOUT}."
        )

    names = list(CATEGORIES) + (["others"] if others == "class" else [])
    index = DetectionIndex(categories=[{"id": i, "name": name} for i, name in enumerate(names, start=1)])
    for image_path, image_id in zip(image_paths, image_ids_from_stems(image_paths), strict=True):
        width, height = image_size(image_path)
        index.images.append({"id": image_id, "file_name": str(image_path), "width": width, "height": height})
        for category, x, y, w, h in _read_annotation_file(annotation_dir / f"{image_path.stem}.txt"):
            if category == IGNORED_REGION or (category == OTHERS and others == "ignore"):
                index.ignore_region(image_id, x, y, w, h)
            else:
                index.add_box(image_id, category, x, y, w, h)
    return index


def _read_annotation_file(path: Path) -> list[tuple[int, float, float, float, float]]:
    boxes = []
    for line_number, text in numbered_lines(path, "annotation file"):
        fields = [field.strip() for field in text.split(",")]
        if fields and fields[-1] == "":  # the official files sometimes end a line with a comma
            fields.pop()
        try:
            values = [float(field) for field in fields]
        except ValueError:
            values = []
        if len(values) != 8 or not all(math.isfinite(v) for v in values):
            raise DatasetError(f"{path}:{line_number}: expected {EXPECTED_LINE}, got {text!r}.")
        x, y, w, h, _score, category = values[:6]
        if w <= 0 or h <= 0:
            raise DatasetError(
                f"{path}:{line_number}: expected {EXPECTED_LINE}, got {text!r} (a box of width {fields[2]} and "
                f"height {fields[3]})."
            )
        if not category.is_integer() or not IGNORED_REGION <= category <= OTHERS:
            raise DatasetError(
                f"{path}:{line_number}: expected {EXPECTED_LINE}, got {text!r} (category {fields[5]} is not 0-11)."
            )
        boxes.append((int(category), x, y, w, h))
    return boxes


def quadrant_rects(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """The four non-overlapping patches (left, top, right, bottom), split at width // 2 and height // 2."""
    mid_x, mid_y = width // 2, height // 2
    return [(0, 0, mid_x, mid_y), (mid_x, 0, width, mid_y), (0, mid_y, mid_x, height), (mid_x, mid_y, width, height)]


def split_into_patches(index: DetectionIndex, out_dir: str | os.PathLike, min_visible: float = 0.5) -> DetectionIndex:
    """Cut every image of `index` into its four quadrants, written under `out_dir`, and return the patches' index.

    Patch q (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) of image i gets id 4 * i + q and the file
    `<out_dir>/<stem>_q<q><suffix>` (JPEG patches are written at quality 95). A normal box is clipped to each patch
    and kept where at least `min_visible` of its area lies inside (so a box cut in half exactly is kept in both
    halves at the default 0.5; 0 keeps any overlap); an ignore region is kept, clipped, wherever it overlaps a
    patch. A patch file that exists with the right pixel size is reused: files are written under a temporary name
    and renamed into place, so an interrupted run never leaves a truncated patch that would pass that check. Every
    image is checked (it exists, its header matches the index's size, its stem is unique) before any patch is
    written. The cache does not see a changed source image of the same name and size: use a fresh `out_dir` then.
    """
    if not 0 <= min_visible <= 1:
        raise DatasetError(f"split_into_patches: min_visible must be in [0, 1], got {min_visible!r}.")
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise DatasetError(f"split_into_patches: {out_dir} exists and is not a folder.")
    stems: dict[str, str] = {}
    for image in index.images:
        path = Path(image["file_name"])
        if not path.is_file():
            raise DatasetError(f"split_into_patches: image {path} (image id {image['id']}) does not exist.")
        actual_width, actual_height = image_size(path)
        if (actual_width, actual_height) != (image["width"], image["height"]):
            raise DatasetError(
                f"split_into_patches: {path} is {actual_width} x {actual_height} px but the index says "
                f"{image['width']} x {image['height']}; the index does not describe this file."
            )
        if image["width"] < 2 or image["height"] < 2:
            raise DatasetError(f"split_into_patches: {path} is too small to cut into four patches.")
        if path.stem in stems:
            raise DatasetError(
                f"split_into_patches: {stems[path.stem]} and {path} have the same stem, so their patches would "
                "overwrite each other."
            )
        stems[path.stem] = str(path)

    patches = DetectionIndex(categories=[dict(c) for c in index.categories])
    annotations = index.annotations_by_image()
    out_dir.mkdir(parents=True, exist_ok=True)
    for image in index.images:
        source = Path(image["file_name"])
        rects = quadrant_rects(image["width"], image["height"])
        targets = [out_dir / f"{source.stem}_q{q}{source.suffix}" for q in range(4)]
        _write_patches(source, rects, targets)
        for q, (rect, target) in enumerate(zip(rects, targets, strict=True)):
            patch_id = image["id"] * 4 + q
            left, top, right, bottom = rect
            patches.images.append(
                {"id": patch_id, "file_name": str(target), "width": right - left, "height": bottom - top}
            )
            for annotation in annotations[image["id"]]:
                clipped = _clip(annotation["bbox"], rect)
                if clipped is None:
                    continue
                x, y, w, h = clipped
                if not annotation["iscrowd"]:
                    original_w, original_h = annotation["bbox"][2:]
                    if w * h < min_visible * original_w * original_h:
                        continue
                patches.add_box(patch_id, annotation["category_id"], x, y, w, h, iscrowd=annotation["iscrowd"])
    return patches


def _clip(bbox: list[float], rect: tuple[int, int, int, int]) -> tuple[float, float, float, float] | None:
    """The part of `bbox` ([x, y, w, h]) inside `rect`, in the patch's coordinates; None if nothing is inside."""
    x, y, w, h = bbox
    left, top, right, bottom = rect
    x1, y1, x2, y2 = max(x, left), max(y, top), min(x + w, right), min(y + h, bottom)
    if x2 <= x1 or y2 <= y1:
        return None
    return x1 - left, y1 - top, x2 - x1, y2 - y1


def _write_patches(source: Path, rects: list[tuple[int, int, int, int]], targets: list[Path]) -> None:
    """Write the patches that are not cached yet; the source image is decoded only if one is missing."""
    needed = [
        (rect, target)
        for rect, target in zip(rects, targets, strict=True)
        if not _has_size(target, (rect[2] - rect[0], rect[3] - rect[1]))
    ]
    if not needed:
        return
    try:
        with Image.open(source) as image:
            image.load()
            for rect, target in needed:
                patch = image.crop(rect)
                tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
                # The temporary name hides the suffix from PIL, so the format is named from the target's suffix.
                options: dict[str, Any] = {"format": Image.registered_extensions().get(target.suffix.lower(), "PNG")}
                if options["format"] == "JPEG":
                    options.update(quality=95)
                try:
                    patch.save(tmp, **options)
                    os.replace(tmp, target)
                finally:
                    tmp.unlink(missing_ok=True)
    except OSError as err:
        raise DatasetError(f"split_into_patches: cannot cut {source} into patches ({err}).") from err


def _has_size(path: Path, size: tuple[int, int]) -> bool:
    if not path.is_file():
        return False
    try:
        return image_size(path) == size
    except DatasetError:
        return False


def read_visdrone_split(root: str | os.PathLike, split: str, others: str = "ignore") -> DetectionIndex:
    """One split of a VisDrone-DET copy laid out as released: `<root>/<split>/{images,annotations}/`
    (e.g. split="VisDrone2019-DET-val")."""
    return read_visdrone(Path(root) / split, others=others)
