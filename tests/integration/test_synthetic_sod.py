"""synthetic_sod, the generated small-object detection set: the same seed the same bytes, its COCO layout, boxes and
classes, its share of small objects, its cache (tests/unit/test_detection_datasets.py: the readers)."""

from __future__ import annotations

import pytest
from PIL import Image

from edgecomp.data.detection import SyntheticDetection
from edgecomp.errors import ConfigError, DatasetError
from tests.helpers.data import folder_digest

SMALL_SET = {"image_size": 96, "train_images": 6, "val_images": 3}


def test_synthetic_sod_same_seed_same_bytes_other_seed_differs(tmp_path):
    first = SyntheticDetection(tmp_path / "a", seed=3, **SMALL_SET).ensure_generated()
    again = SyntheticDetection(tmp_path / "b", seed=3, **SMALL_SET).ensure_generated()
    other = SyntheticDetection(tmp_path / "a", seed=4, **SMALL_SET).ensure_generated()
    digest = folder_digest(first)
    assert len([k for k in digest if k.endswith(".png")]) == 9
    assert "annotations/instances_train.json" in digest and "annotations/instances_val.json" in digest
    assert digest == folder_digest(again)
    other_digest = folder_digest(other)
    assert other_digest.keys() == digest.keys()
    assert all(other_digest[k] != digest[k] for k in digest if k.endswith(".png"))


def test_synthetic_sod_coco_layout_boxes_and_classes(tmp_path):
    source = SyntheticDetection(tmp_path, num_classes=4, objects_per_image=(2, 5), **SMALL_SET)
    train = source.index("train")
    assert [c["name"] for c in train.categories] == ["circle", "square", "triangle", "cross"]
    assert [i["id"] for i in train.images] == list(range(1, 7))
    assert train.images[0]["file_name"] == str((source.folder / "images" / "train" / "000001.png").absolute())
    per_image = train.annotations_by_image()
    assert all(1 <= len(boxes) <= 5 for boxes in per_image.values())
    for annotation in train.annotations:
        x, y, w, h = annotation["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 96 and y + h <= 96 and w > 0 and h > 0
        assert annotation["category_id"] in (1, 2, 3, 4) and annotation["iscrowd"] == 0
    assert len(source.index("val").images) == 3
    with pytest.raises(DatasetError, match="splits"):
        source.index("test")


def test_synthetic_sod_small_share(tmp_path):
    def small_fraction(share: float) -> float:
        index = SyntheticDetection(tmp_path, small_share=share, image_size=128, train_images=40, val_images=1).index(
            "train"
        )
        assert len(index.annotations) > 150
        return sum(a["area"] < 32 * 32 for a in index.annotations) / len(index.annotations)

    assert small_fraction(0.3) == pytest.approx(0.3, abs=0.08)
    assert small_fraction(0.8) == pytest.approx(0.8, abs=0.08)
    everything_small = SyntheticDetection(tmp_path, small_share=1.0, **SMALL_SET).index("train")
    assert all(max(a["bbox"][2:]) < 32 for a in everything_small.annotations)
    nothing_small = SyntheticDetection(tmp_path, small_share=0.0, **SMALL_SET).index("train")
    assert all(a["area"] >= 32 * 32 for a in nothing_small.annotations)


def test_synthetic_sod_cache_is_reused(tmp_path):
    source = SyntheticDetection(tmp_path, **SMALL_SET)
    folder = source.ensure_generated()
    marker = folder / "images" / "val" / "000001.png"
    Image.new("RGB", (96, 96), (1, 2, 3)).save(marker)
    SyntheticDetection(tmp_path, **SMALL_SET).index("val")
    with Image.open(marker) as image:
        assert image.getpixel((0, 0)) == (1, 2, 3)
    assert not list(tmp_path.glob(".*tmp*")), "no temporary folder is left behind"


def test_synthetic_sod_rendered_at_twice_the_input_judges_small_at_the_input(tmp_path):
    """render_scale 2: images of 2 x image_size px, every length doubled, an object small when both sides are under
    32 px of the input (64 rendered px); the share of small objects is the one asked for, as at render_scale 1."""
    settings = {"image_size": 96, "train_images": 30, "val_images": 1, "small_share": 0.5}
    rendered = SyntheticDetection(tmp_path, render_scale=2.0, **settings)
    index = rendered.index("train")
    assert {(image["width"], image["height"]) for image in index.images} == {(192, 192)}
    with Image.open(index.images[0]["file_name"]) as image:
        assert image.size == (192, 192)
    small = [a for a in index.annotations if a["area"] < 64 * 64]
    assert len(index.annotations) > 100 and len(small) / len(index.annotations) == pytest.approx(0.5, abs=0.1)
    assert all(max(a["bbox"][2:]) < 64 for a in small)
    assert min(max(a["bbox"][2:]) for a in small) >= 2 * 5 * 0.8  # the smallest radius, 5 input px, doubled
    assert all(a["area"] >= 64 * 64 for a in index.annotations if a not in small)
    plain = SyntheticDetection(tmp_path, **settings)
    assert plain.folder.name == "c4-px96-tr30-va1-obj2_8-small0.5-seed0"  # render_scale 1: the cache of before
    assert rendered.folder.name == f"{plain.folder.name}-render2"
    tiny = SyntheticDetection(tmp_path, small_radius=(3, 4), **settings).index("train")
    assert max(max(a["bbox"][2:]) for a in tiny.annotations if a["area"] < 32 * 32) <= 2 * 4 + 1


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"render_scale": 0.5}, "render_scale must be >= 1"),
        ({"render_scale": 1.01}, "whole number of pixels"),
        ({"small_radius": (4, 16)}, r"small_radius must be \(min, max\) px with 1 <= min <= max < 16"),
        ({"small_radius": (6, 5)}, "small_radius"),
    ],
)
def test_synthetic_sod_refuses_a_render_scale_or_small_radius_it_cannot_draw(tmp_path, setting, message):
    with pytest.raises(ConfigError, match=message):
        SyntheticDetection(tmp_path, **{**SMALL_SET, **setting})
    assert not any(tmp_path.iterdir()), "nothing is written"
