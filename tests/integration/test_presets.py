"""Presets (`experiment=...`) on a real dataset: the smoke preset trains and evaluates on a Flowers-102 copy, reading
its own files, and a size the generated dataset does not define is refused in one line (tests/unit/test_presets_compose.py:
every preset composes with every dataset of its task)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from tests.conftest import read_jsonl, run_in_process


def write_flowers102(root, images_per_split: int = 12, size=(64, 48)):
    """A Flowers-102 copy in the official layout (jpg/, imagelabels.mat, setid.mat), images of random pixels."""
    rng = np.random.default_rng(0)
    count = 3 * images_per_split
    (root / "jpg").mkdir(parents=True)
    for image_id in range(1, count + 1):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "jpg" / f"image_{image_id:05d}.jpg")
    labels = rng.integers(1, 103, count)
    savemat(root / "imagelabels.mat", {"labels": labels[None].astype(np.uint8)})
    ids = np.arange(1, count + 1)
    splits = {"trnid": ids[:images_per_split], "valid": ids[images_per_split : 2 * images_per_split]}
    savemat(root / "setid.mat", {**splits, "tstid": ids[2 * images_per_split :]})
    return root


def test_the_smoke_preset_trains_and_evaluates_on_flowers102(tmp_path):
    """`experiment=smoke dataset=flowers102`: the preset's small image size, epochs and latency images, the real
    dataset's own files (read whole: the smoke size is the generated set's)."""
    root = write_flowers102(tmp_path / "flowers102")
    run_in_process(
        "train.py",
        "experiment=smoke",
        "dataset=flowers102",
        f"dataset.root={root}",
        f"paths.results={tmp_path / 'results'}",
        "logger=none",
    )
    (record,) = read_jsonl(tmp_path / "results" / "records.jsonl")
    assert (record["dataset"], record["model"]) == ("flowers102", "mobilenetv3_small_100")
    assert record["input_size"] == [3, 32, 32]
    assert record["latency_ms"]["images"] == 16  # the preset's latency set (the 12 test images, cycled)
    correct = record["metrics"]["top1"] * 12  # top-1 over the generated copy's 12 test images
    assert correct == pytest.approx(round(correct), abs=1e-6)
    assert record["config"]["trainer"]["max_epochs"] == 2
    assert record["config"]["model"]["num_classes"] == 102


def test_a_size_the_generated_dataset_does_not_define_is_refused_in_one_line(tmp_path):
    data = tmp_path / "data"
    proc = run_in_process(
        "train.py", "dataset.size=tiny", f"paths.results={tmp_path}", f"paths.data={data}", check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "edgecomp: error: dataset.size=tiny: dataset=synthetic_cls has the sizes full, smoke"
    assert not data.exists() and not (tmp_path / "runs").exists() and not (tmp_path / "records.jsonl").exists()
