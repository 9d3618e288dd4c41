import pytest

from edgecomp.data.synthetic_cls import SyntheticClassification
from edgecomp.errors import DatasetError
from tests.helpers.data import folder_digest


def test_same_seed_gives_byte_identical_images(tmp_path):
    a = SyntheticClassification(
        tmp_path / "a", num_classes=10, image_size=32, train_per_class=3, val_per_class=2, seed=7
    )
    b = SyntheticClassification(
        tmp_path / "b", num_classes=10, image_size=32, train_per_class=3, val_per_class=2, seed=7
    )
    digest_a, digest_b = folder_digest(a.ensure_generated(), "*.png"), folder_digest(b.ensure_generated(), "*.png")
    assert len(digest_a) == 10 * (3 + 2)
    assert digest_a == digest_b


def test_another_seed_gives_other_images(tmp_path):
    a = SyntheticClassification(tmp_path, num_classes=10, image_size=32, train_per_class=3, val_per_class=2, seed=1)
    b = SyntheticClassification(tmp_path, num_classes=10, image_size=32, train_per_class=3, val_per_class=2, seed=2)
    digest_a, digest_b = folder_digest(a.ensure_generated(), "*.png"), folder_digest(b.ensure_generated(), "*.png")
    assert digest_a.keys() == digest_b.keys()
    assert all(digest_a[k] != digest_b[k] for k in digest_a)


def test_image_folder_layout_with_every_class(tmp_path):
    source = SyntheticClassification(tmp_path, num_classes=12, image_size=40, train_per_class=2, val_per_class=1)
    train = source.dataset("train")
    assert len(train.classes) == 12 and train.classes == source.classes
    assert sorted(set(train.targets)) == list(range(12))
    image, label = train[0]
    assert image.size == (40, 40) and label == 0
    assert len(source.dataset("val")) == 12
    with pytest.raises(DatasetError, match="splits"):
        source.dataset("test")


def test_cache_is_reused_not_regenerated(tmp_path):
    source = SyntheticClassification(tmp_path, num_classes=10, image_size=32, train_per_class=2, val_per_class=1)
    folder = source.ensure_generated()
    first = next(folder.rglob("*.png"))
    first.write_bytes(b"marker")  # a regeneration would overwrite it
    SyntheticClassification(tmp_path, num_classes=10, image_size=32, train_per_class=2, val_per_class=1).dataset("val")
    assert first.read_bytes() == b"marker"
    assert not list(tmp_path.glob(".*tmp*")), "no temporary folder is left behind"
