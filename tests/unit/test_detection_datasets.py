"""The detection readers (COCO, YOLO/COCO128, VisDrone + ScaleKD patches) and DetectionDataset, on small fixtures
written in each official format and, where there is one, on the real COCO128 copy (`coco128` fixture)
(tests/integration/test_synthetic_sod.py: the generated set)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from edgecomp.data.detection import (
    DetectionDataset,
    DetectionIndex,
    collate,
    read_coco,
    read_visdrone,
    read_yolo,
    split_into_patches,
)
from edgecomp.errors import DatasetError


def _image(path: Path, size: tuple[int, int], colour=(200, 100, 50)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _boxes(index: DetectionIndex, image_id: int) -> list[tuple[int, list[float], int]]:
    return [(a["category_id"], a["bbox"], a["iscrowd"]) for a in index.annotations if a["image_id"] == image_id]


# ---------------------------------------------------------------------------------------------------------- COCO


COCO_JSON = {
    "images": [
        {"id": 397133, "file_name": "000000397133.jpg", "width": 64, "height": 48},
        {"id": 37777, "file_name": "000000037777.jpg", "width": 40, "height": 30},
    ],
    "annotations": [
        {
            "id": 900,
            "image_id": 397133,
            "category_id": 18,
            "bbox": [1.5, 2.0, 10.0, 20.0],
            "area": 150.25,
            "iscrowd": 0,
        },
        {"id": 901, "image_id": 397133, "category_id": 1, "bbox": [0, 0, 64, 10], "iscrowd": 1},
        {"id": 902, "image_id": 37777, "category_id": 1, "bbox": [5, 6, 7, 8]},
    ],
    "categories": [{"id": 1, "name": "person", "supercategory": "person"}, {"id": 18, "name": "dog"}],
}


@pytest.fixture
def coco_root(tmp_path):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(COCO_JSON, indent=1))
    for image in COCO_JSON["images"]:
        _image(root / "val2017" / image["file_name"], (image["width"], image["height"]))
    return root


def test_coco_keeps_ids_names_boxes_area_and_crowd(coco_root):
    index = read_coco(coco_root, "val2017")
    assert [(i["id"], i["width"], i["height"]) for i in index.images] == [(397133, 64, 48), (37777, 40, 30)]
    assert index.images[0]["file_name"] == str(coco_root.absolute() / "val2017" / "000000397133.jpg")
    assert [(c["id"], c["name"]) for c in index.categories] == [(1, "person"), (18, "dog")]
    assert _boxes(index, 397133) == [(18, [1.5, 2.0, 10.0, 20.0], 0), (1, [0.0, 0.0, 64.0, 10.0], 1)]
    assert [a["area"] for a in index.annotations] == [150.25, 640.0, 56.0]  # COCO's area kept, else w * h
    assert _boxes(index, 37777) == [(1, [5.0, 6.0, 7.0, 8.0], 0)]


def test_coco_accepts_images_subfolder(tmp_path, coco_root):
    (coco_root / "images").mkdir()
    (coco_root / "val2017").rename(coco_root / "images" / "val2017")
    index = read_coco(coco_root, "val2017")
    assert index.images[1]["file_name"] == str(coco_root.absolute() / "images" / "val2017" / "000000037777.jpg")


def test_coco_missing_root_and_annotation_file(tmp_path, coco_root):
    with pytest.raises(DatasetError, match="does not exist") as err:
        read_coco(tmp_path / "nowhere", "val2017")
    assert str(tmp_path / "nowhere") in str(err.value) and "annotations/instances_<split>.json" in str(err.value)
    with pytest.raises(DatasetError) as err:
        read_coco(coco_root, "train2017")
    assert str(coco_root / "annotations" / "instances_train2017.json") in str(err.value)
    assert "Expected layout" in str(err.value)


def test_coco_malformed_json_names_file_and_line(coco_root):
    path = coco_root / "annotations" / "instances_val2017.json"
    path.write_text('{\n "images": [],\n "annotations": [,]\n}')
    with pytest.raises(DatasetError) as err:
        read_coco(coco_root, "val2017")
    assert f"{path}:3:" in str(err.value) and "not valid JSON" in str(err.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("categories"), "expected 'categories' to be a list"),
        (lambda d: d["annotations"][2].update(image_id=5), r"annotations\[2\] \(id 902\): image_id 5 is not among"),
        (lambda d: d["annotations"][0].update(category_id=3), r"annotations\[0\] \(id 900\): category_id 3"),
        (lambda d: d["annotations"][1].update(bbox=[0, 0, -1, 4]), r"annotations\[1\].*expected 'bbox'"),
        (lambda d: d["annotations"][1].update(bbox=[0, 0, 4]), r"annotations\[1\].*4 finite numbers"),
        (lambda d: d["annotations"][1].update(iscrowd=2), r"annotations\[1\].*'iscrowd' to be 0 or 1"),
        (lambda d: d["images"][0].update(width="64"), r"images\[0\]: expected 'width' to be an integer"),
        (lambda d: d["images"].append(dict(d["images"][0])), "image id 397133 occurs more than once"),
    ],
)
def test_coco_bad_entries_name_the_entry(coco_root, change, message):
    data = json.loads(json.dumps(COCO_JSON))
    change(data)
    path = coco_root / "annotations" / "instances_val2017.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=message) as err:
        read_coco(coco_root, "val2017")
    assert str(path) in str(err.value)


def test_coco_missing_image_is_named(coco_root):
    (coco_root / "val2017" / "000000037777.jpg").unlink()
    with pytest.raises(DatasetError, match="1 image.*000000037777.jpg"):
        read_coco(coco_root, "val2017")


# ---------------------------------------------------------------------------------------------------------- YOLO


@pytest.fixture
def yolo_root(tmp_path):
    root = tmp_path / "yolo"
    root.mkdir()
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: cat\n  1: dog\n  2: bird\n"
    )
    _image(root / "images" / "val" / "000000000042.png", (64, 32))
    _image(root / "images" / "val" / "b_frame.jpg", (20, 10))
    _image(root / "images" / "val" / "a_frame.jpg", (20, 10))
    _image(root / "images" / "val" / "000000000001.jpg", (30, 30))
    (root / "images" / "val" / "notes.txt").write_text("not an image")
    labels = root / "labels" / "val"
    labels.mkdir(parents=True)
    # x = (0.25 - 0.125) * 64 = 8, y = (0.25 - 0.25) * 32 = 0, w = 0.25 * 64 = 16, h = 0.5 * 32 = 16
    # the second box pokes out of the left edge: x from -4 to 12, clipped to 0..12
    (labels / "000000000042.txt").write_text("2 0.25 0.25 0.25 0.5\n\n0 0.0625 0.5 0.25 0.5\n")
    (labels / "a_frame.txt").write_text("")  # an empty label file: no objects
    (labels / "b_frame.txt").write_text("1 0.5 0.5 1 1\n")
    return root  # 000000000001.jpg has no label file at all: no objects


def test_yolo_pixel_boxes_from_normalised_lines(yolo_root):
    index = read_yolo(yolo_root, "val")
    assert _boxes(index, 42) == [(2, [8.0, 0.0, 16.0, 16.0], 0), (0, [0.0, 8.0, 12.0, 16.0], 0)]
    assert [a["area"] for a in index.annotations if a["image_id"] == 42] == [256.0, 192.0]
    record = next(i for i in index.images if i["id"] == 42)
    assert (record["width"], record["height"]) == (64, 32)
    assert record["file_name"] == str(yolo_root.absolute() / "images" / "val" / "000000000042.png")


def test_yolo_image_ids_from_stems_and_running_numbers(yolo_root):
    index = read_yolo(yolo_root, "val")
    by_name = {Path(i["file_name"]).name: i["id"] for i in index.images}
    # numeric stems keep their number; the others count from 1 in sorted order, skipping the taken id 1
    assert by_name == {"000000000001.jpg": 1, "000000000042.png": 42, "a_frame.jpg": 2, "b_frame.jpg": 3}
    assert _boxes(index, 2) == [] and _boxes(index, 1) == []  # empty label file; no label file
    assert _boxes(index, 3) == [(1, [0.0, 0.0, 20.0, 10.0], 0)]


def test_yolo_categories_from_yaml_dict_list_or_argument(yolo_root):
    assert read_yolo(yolo_root, "val").categories == [
        {"id": 0, "name": "cat"},
        {"id": 1, "name": "dog"},
        {"id": 2, "name": "bird"},
    ]
    (yolo_root / "data.yaml").write_text("names: [ant, bee, cow, doe]\n")
    assert [c["name"] for c in read_yolo(yolo_root, "val").categories] == ["ant", "bee", "cow", "doe"]
    (yolo_root / "data.yaml").unlink()
    index = read_yolo(yolo_root, "val", names={0: "x", 1: "y", 2: "z", 7: "w"})
    assert [(c["id"], c["name"]) for c in index.categories] == [(0, "x"), (1, "y"), (2, "z"), (7, "w")]


def test_coco128_copy(coco128):
    index = read_yolo(coco128, "val2017")
    assert len(index.images) == 128 and len(index.annotations) == 898
    assert len(index.categories) == 80 and index.categories[0] == {"id": 0, "name": "person"}
    assert {a["category_id"] for a in index.annotations} <= set(range(80))
    image = next(i for i in index.images if i["id"] == 139)
    assert (image["width"], image["height"]) == (640, 426)
    # labels/val2017/000000000139.txt line 1: `58 0.389578 0.416103 0.0385937 0.163146`
    category, bbox, _ = _boxes(index, 139)[0]
    assert category == 58
    assert bbox == pytest.approx(
        [(0.389578 - 0.0385937 / 2) * 640, (0.416103 - 0.163146 / 2) * 426, 24.7, 69.5], abs=0.01
    )
    assert all(
        0 <= a["bbox"][0] and a["bbox"][0] + a["bbox"][2] <= 640 for a in index.annotations if a["image_id"] == 139
    )
    assert len(read_yolo(coco128, "train2017").images) == 128


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("45 0.4 abc 0.2 0.3", "expected `class x_center y_center width height` with 5 numbers normalised to"),
        ("1 0.4 0.5 0.2", "expected `class x_center"),
        ("1 0.4 0.5 0.2 0.3 0.9", "expected `class x_center"),
        ("3 0.4 0.5 0.2 0.3", r"class id 3 is not one of the dataset's classes \(ids 0-2\)"),
        ("1.5 0.4 0.5 0.2 0.3", "class id 1.5 is not one of"),
        ("1 0.4 0.5 1.2 0.3", r"coordinate outside \[0, 1\]"),
        ("1 12 30 4 4", r"coordinate outside \[0, 1\]"),
        ("1 0.4 0.5 0 0.3", "positive width and height"),
    ],
)
def test_yolo_malformed_line_names_file_line_and_text(yolo_root, line, message):
    path = yolo_root / "labels" / "val" / "000000000042.txt"
    path.write_text(f"2 0.25 0.25 0.25 0.5\n\n{line}\n")
    with pytest.raises(DatasetError, match=message) as err:
        read_yolo(yolo_root, "val")
    assert f"{path}:3: " in str(err.value) and repr(line) in str(err.value)


def test_yolo_missing_root_folders_and_names(tmp_path, yolo_root):
    with pytest.raises(DatasetError) as err:
        read_yolo(tmp_path / "nowhere", "val")
    assert str(tmp_path / "nowhere") in str(err.value) and "labels/<split>/<stem>.txt" in str(err.value)
    with pytest.raises(DatasetError, match=r"images/test does not exist.*splits present there: \['val'\]"):
        read_yolo(yolo_root, "test")
    (yolo_root / "images" / "empty").mkdir()
    (yolo_root / "labels" / "empty").mkdir()
    with pytest.raises(DatasetError, match="images/empty holds no images"):
        read_yolo(yolo_root, "empty")
    (yolo_root / "labels" / "val").rename(yolo_root / "labels" / "old")
    with pytest.raises(DatasetError, match="labels/val does not exist"):
        read_yolo(yolo_root, "val")
    (yolo_root / "labels" / "old").rename(yolo_root / "labels" / "val")
    (yolo_root / "data.yaml").write_text("nc: 3\n")
    with pytest.raises(DatasetError, match="data.yaml: has no `names` key"):
        read_yolo(yolo_root, "val")
    (yolo_root / "data.yaml").write_text("names: [a, b]\nnc: 3\n")
    with pytest.raises(DatasetError, match="`nc` is 3 but `names` lists 2"):
        read_yolo(yolo_root, "val")
    (yolo_root / "data.yaml").write_text("names: {0: a, x: b}\n")
    with pytest.raises(DatasetError, match="integer ids"):
        read_yolo(yolo_root, "val")
    (yolo_root / "data.yaml").unlink()
    with pytest.raises(DatasetError, match="data.yaml does not exist and no `names` were given"):
        read_yolo(yolo_root, "val")


def test_yolo_unreadable_image_and_clashing_ids(yolo_root):
    (yolo_root / "images" / "val" / "000000000001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="000000000001.jpg: cannot read the image header"):
        read_yolo(yolo_root, "val")
    _image(yolo_root / "images" / "val" / "000000000001.jpg", (30, 30))
    _image(yolo_root / "images" / "val" / "1.png", (30, 30))
    with pytest.raises(DatasetError, match="both map to image id 1"):
        read_yolo(yolo_root, "val")


# ------------------------------------------------------------------------------------------------------ VisDrone


VISDRONE_FIRST = "0000001_00000_d_0000001"
VISDRONE_SECOND = "0000002_00000_d_0000002"


@pytest.fixture
def visdrone_root(tmp_path):
    root = tmp_path / "VisDrone2019-DET-val"
    # 101 x 81 px: the quadrants split at x = 50 and y = 40 (left/top get the smaller half)
    image = Image.new("RGB", (101, 81), (0, 0, 0))
    for q, colour in enumerate([(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 250)]):
        left, top = (q % 2) * 50, (q // 2) * 40
        image.paste(colour, (left, top, left + 50 + q % 2, top + 40 + q // 2))
    (root / "images").mkdir(parents=True)
    image.save(root / "images" / f"{VISDRONE_FIRST}.jpg", quality=95)
    _image(root / "images" / f"{VISDRONE_SECOND}.jpg", (60, 40))
    (root / "annotations").mkdir()
    (root / "annotations" / f"{VISDRONE_FIRST}.txt").write_text(
        "10,20,30,10,1,4,0,0\n"  # car, inside the top-left quadrant
        "40,10,20,10,1,1,0,1,\n"  # pedestrian cut in half by x = 50 (trailing comma, as in the official files)
        "45,50,20,10,1,9,1,0\n"  # bus, a quarter in the bottom-left quadrant, three quarters in the bottom-right
        "0,0,101,81,0,0,0,0\n"  # ignored region over the whole image
    )
    (root / "annotations" / f"{VISDRONE_SECOND}.txt").write_text("1,2,3,4,1,2,0,0\n\n5,6,7,8,1,11,0,0\n")
    return root


def test_visdrone_categories_ignored_regions_and_others(visdrone_root):
    index = read_visdrone(visdrone_root)
    assert [c["id"] for c in index.categories] == list(range(1, 11))
    assert index.categories[3] == {"id": 4, "name": "car"} and index.categories[7]["name"] == "awning-tricycle"
    assert [(i["id"], Path(i["file_name"]).stem, i["width"]) for i in index.images] == [
        (1, VISDRONE_FIRST, 101),
        (2, VISDRONE_SECOND, 60),
    ]
    first = _boxes(index, 1)
    assert first[:3] == [
        (4, [10.0, 20.0, 30.0, 10.0], 0),
        (1, [40.0, 10.0, 20.0, 10.0], 0),
        (9, [45.0, 50.0, 20.0, 10.0], 0),
    ]
    # the ignored region (category 0) is one crowd box per category, so no class's detection there counts
    assert first[3:] == [(c, [0.0, 0.0, 101.0, 81.0], 1) for c in range(1, 11)]
    # "others" (11) is an ignore region by default ...
    assert _boxes(index, 2) == [(2, [1.0, 2.0, 3.0, 4.0], 0)] + [(c, [5.0, 6.0, 7.0, 8.0], 1) for c in range(1, 11)]
    # ... and an 11th class on request
    index = read_visdrone(visdrone_root, others="class")
    assert index.categories[-1] == {"id": 11, "name": "others"}
    assert _boxes(index, 2) == [(2, [1.0, 2.0, 3.0, 4.0], 0), (11, [5.0, 6.0, 7.0, 8.0], 0)]
    assert sum(a["iscrowd"] for a in index.annotations) == 11


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1,2,3,4,1,4", "expected 8 comma-separated numbers `x,y,width,height,score,category,truncation,occlusion`"),
        ("1,2,3,4,1,4,0,0,7", "expected 8 comma-separated numbers"),
        ("1,2,three,4,1,4,0,0", "expected 8 comma-separated numbers"),
        ("1,2,0,4,1,4,0,0", "a box of width 0 and height 4"),
        ("1,2,3,-4,1,4,0,0", "a box of width 3 and height -4"),
        ("1,2,3,4,1,12,0,0", "category 12 is not 0-11"),
    ],
)
def test_visdrone_malformed_line_names_file_line_and_text(visdrone_root, line, message):
    path = visdrone_root / "annotations" / f"{VISDRONE_SECOND}.txt"
    path.write_text(f"1,2,3,4,1,2,0,0\n{line}\n")
    with pytest.raises(DatasetError, match=message) as err:
        read_visdrone(visdrone_root)
    assert f"{path}:2: " in str(err.value) and repr(line) in str(err.value)


def test_visdrone_missing_root_folder_annotation_and_bad_option(tmp_path, visdrone_root):
    with pytest.raises(DatasetError) as err:
        read_visdrone(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value) and "<root>/annotations/<stem>.txt" in str(err.value)
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "annotations").mkdir()
    with pytest.raises(DatasetError, match="empty/images holds no .jpg images"):
        read_visdrone(tmp_path / "empty")
    with pytest.raises(DatasetError, match="others must be one of"):
        read_visdrone(visdrone_root, others="drop")
    (visdrone_root / "annotations" / f"{VISDRONE_SECOND}.txt").unlink()
    with pytest.raises(DatasetError, match=f"1 image.*no annotation file.*{VISDRONE_SECOND}.txt"):
        read_visdrone(visdrone_root)
    (visdrone_root / "annotations").rename(visdrone_root / "labels")
    with pytest.raises(DatasetError, match="annotations does not exist"):
        read_visdrone(visdrone_root)


def test_four_patches_clip_boxes_to_their_quadrant(tmp_path, visdrone_root):
    index = read_visdrone(visdrone_root)
    index.images = index.images[:1]
    index.annotations = [a for a in index.annotations if a["image_id"] == 1]
    patches = split_into_patches(index, tmp_path / "patches")
    assert [(p["id"], p["width"], p["height"]) for p in patches.images] == [
        (4, 50, 40),
        (5, 51, 40),
        (6, 50, 41),
        (7, 51, 41),
    ]
    assert patches.categories == index.categories
    for patch, colour in zip(patches.images, [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 250)], strict=True):
        with Image.open(patch["file_name"]) as image:
            assert image.size == (patch["width"], patch["height"]) and image.format == "JPEG"
            assert all(abs(a - b) <= 12 for a, b in zip(image.getpixel((25, 20)), colour, strict=True))
    assert Path(patches.images[3]["file_name"]) == (tmp_path / "patches" / f"{VISDRONE_FIRST}_q3.jpg").absolute()

    normal = {p["id"]: [(c, b) for c, b, crowd in _boxes(patches, p["id"]) if not crowd] for p in patches.images}
    assert normal == {
        4: [(4, [10.0, 20.0, 30.0, 10.0]), (1, [40.0, 10.0, 10.0, 10.0])],  # car; left half of the pedestrian
        5: [(1, [0.0, 10.0, 10.0, 10.0])],  # right half of the pedestrian (exactly 0.5 visible: kept)
        6: [],  # only a quarter of the bus is here: dropped
        7: [(9, [0.0, 10.0, 15.0, 10.0])],  # three quarters of the bus
    }
    crowd = {p["id"]: {tuple(b) for _, b, is_crowd in _boxes(patches, p["id"]) if is_crowd} for p in patches.images}
    assert crowd == {
        4: {(0.0, 0.0, 50.0, 40.0)},
        5: {(0.0, 0.0, 51.0, 40.0)},
        6: {(0.0, 0.0, 50.0, 41.0)},
        7: {(0.0, 0.0, 51.0, 41.0)},
    }
    assert sum(a["iscrowd"] for a in patches.annotations) == 4 * 10

    lenient = split_into_patches(index, tmp_path / "patches", min_visible=0.2)
    assert [(c, b) for c, b, crowd in _boxes(lenient, 6) if not crowd] == [(9, [45.0, 10.0, 5.0, 10.0])]


def test_patches_are_cached_by_size_and_validated_before_writing(tmp_path, visdrone_root):
    index = read_visdrone(visdrone_root)
    out = tmp_path / "patches"
    split_into_patches(index, out)
    assert len(list(out.iterdir())) == 8
    kept, stale = out / f"{VISDRONE_FIRST}_q0.jpg", out / f"{VISDRONE_FIRST}_q1.jpg"
    Image.new("RGB", (50, 40), (1, 2, 3)).save(kept)  # right size: reused as it is
    Image.new("RGB", (9, 9), (1, 2, 3)).save(stale)  # wrong size: rewritten
    split_into_patches(index, out)
    with Image.open(kept) as image:
        assert image.getpixel((25, 20)) == pytest.approx((1, 2, 3), abs=3)
    with Image.open(stale) as image:
        assert image.size == (51, 40) and image.getpixel((25, 20))[1] > 200
    assert not list(out.glob(".*tmp*")), "no temporary file is left behind"

    broken = read_visdrone(visdrone_root)
    Path(broken.images[1]["file_name"]).unlink()
    with pytest.raises(DatasetError, match=f"{VISDRONE_SECOND}.jpg .*does not exist"):
        split_into_patches(broken, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists(), "nothing is written when an image is missing"
    broken.images[0]["width"] = 100
    with pytest.raises(DatasetError, match="is 101 x 81 px but the index says 100 x 81"):
        split_into_patches(broken, tmp_path / "fresh")
    with pytest.raises(DatasetError, match="min_visible"):
        split_into_patches(index, out, min_visible=1.5)


# -------------------------------------------------------------------------------------------- DetectionDataset


def test_dataset_items_and_collate(yolo_root):
    index = read_yolo(yolo_root, "val")
    dataset = DetectionDataset(index)
    position = next(n for n, i in enumerate(index.images) if i["id"] == 42)
    image, target = dataset[position]
    assert image.shape == (3, 32, 64) and image.dtype == torch.float32
    assert image[:, 0, 0].tolist() == pytest.approx([200 / 255, 100 / 255, 50 / 255])
    assert target["boxes"].dtype == torch.float32 and target["boxes"].tolist() == [[8, 0, 24, 16], [0, 8, 12, 24]]
    assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == [2, 0]
    assert target["iscrowd"].dtype == torch.int64 and target["iscrowd"].tolist() == [0, 0]
    assert target["image_id"] == 42
    empty_image, empty = dataset[next(n for n, i in enumerate(index.images) if i["id"] == 1)]
    assert empty_image.shape == (3, 30, 30) and empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)

    images, targets = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate)))
    assert isinstance(images, list) and len(images) == 4 and len(targets) == 4
    assert sorted(tuple(i.shape) for i in images) == [(3, 10, 20), (3, 10, 20), (3, 30, 30), (3, 32, 64)]
    assert sorted(t["image_id"] for t in targets) == [1, 2, 3, 42]


def test_dataset_transform_moves_boxes_with_pixels(yolo_root):
    index = read_yolo(yolo_root, "val")
    dataset = DetectionDataset(index, transform=v2.RandomHorizontalFlip(p=1.0))
    image, target = dataset[next(n for n, i in enumerate(index.images) if i["id"] == 42)]
    assert type(image) is torch.Tensor and type(target["boxes"]) is torch.Tensor
    assert target["boxes"].tolist() == [[40, 0, 56, 16], [52, 8, 64, 24]]  # x -> 64 - x
    assert target["labels"].tolist() == [2, 0]


def test_dataset_image_that_does_not_fit_its_index(yolo_root):
    index = read_yolo(yolo_root, "val")
    _image(Path(index.images[0]["file_name"]), (31, 30))
    with pytest.raises(DatasetError, match="is 31 x 30 px but its index entry"):
        DetectionDataset(index)[0]
    Path(index.images[0]["file_name"]).unlink()
    with pytest.raises(DatasetError, match="cannot read the image"):
        DetectionDataset(index)[0]
