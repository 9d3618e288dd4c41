"""The flowers102 loader on a small fixture written in the official format."""

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from edgecomp.config import build
from edgecomp.data.flowers102 import Flowers102Source
from edgecomp.errors import DatasetError
from tests.conftest import compose_config

# image id -> 1-based class, as in imagelabels.mat
LABELS = {1: 1, 2: 77, 3: 102, 4: 1, 5: 77, 6: 102, 7: 5, 8: 5}
SPLITS = {"trnid": [1, 2, 3, 7], "valid": [4, 5], "tstid": [6, 8]}


def write_official_layout(base, image_ids=LABELS):
    (base / "jpg").mkdir(parents=True)
    for image_id in image_ids:
        colour = (image_id * 30 % 255, 80, 160)
        Image.new("RGB", (48, 40), colour).save(base / "jpg" / f"image_{image_id:05d}.jpg")
    labels = np.array([[LABELS[i] for i in sorted(LABELS)]], dtype=np.uint8)  # shape (1, N), like the original
    savemat(base / "imagelabels.mat", {"labels": labels})
    savemat(base / "setid.mat", {k: np.array([v], dtype=np.uint16) for k, v in SPLITS.items()})
    return base


@pytest.fixture
def flowers_root(tmp_path):
    return write_official_layout(tmp_path / "flowers")


def test_reads_splits_and_zero_based_labels(flowers_root):
    source = Flowers102Source(flowers_root)
    train = source.dataset("train")
    assert len(train) == 4 and len(source.dataset("val")) == 2 and len(source.dataset("test")) == 2
    assert [train[i][1] for i in range(4)] == [0, 76, 101, 4]
    image, _ = train[0]
    assert image.size == (48, 40)


def test_torchvision_layout_with_flowers_102_subfolder(tmp_path):
    write_official_layout(tmp_path / "flowers-102")
    assert len(Flowers102Source(tmp_path).dataset("val")) == 2


def test_config_group_builds_a_working_datamodule(flowers_root):
    cfg = compose_config("train", ["dataset=flowers102", f"dataset.root={flowers_root}", "dataset.image_size=32"])
    datamodule = build(cfg.dataset.datamodule)
    datamodule.setup("fit")
    images, labels = next(iter(datamodule.eval_dataloader()))  # eval split = test
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.float32
    assert labels.tolist() == [101, 4]


def test_missing_root_names_path_and_layout(tmp_path):
    with pytest.raises(DatasetError) as err:
        Flowers102Source(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
    assert "imagelabels.mat" in str(err.value) and "setid.mat" in str(err.value) and "jpg/" in str(err.value)


def test_missing_mat_file_is_named(flowers_root):
    (flowers_root / "setid.mat").unlink()
    with pytest.raises(DatasetError, match="lacks setid.mat"):
        Flowers102Source(flowers_root)


def test_missing_image_is_named(flowers_root):
    (flowers_root / "jpg" / "image_00006.jpg").unlink()
    source = Flowers102Source(flowers_root)
    assert len(source.dataset("train")) == 4
    with pytest.raises(DatasetError, match="image_00006.jpg"):
        source.dataset("test")


def test_md5_check_is_available_and_rejects_a_fixture(flowers_root):
    with pytest.raises(DatasetError, match="could not read"):
        Flowers102Source(flowers_root, verify_md5=True).dataset("train")
