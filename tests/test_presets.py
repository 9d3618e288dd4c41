"""Presets (`experiment=...`) compose with every dataset of their task: a key only a generated dataset reads (how
many images to generate) lives in that dataset's config as a named size, so a preset on a real dataset passes no
generator setting to its reader."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from hydra.utils import get_method
from omegaconf import OmegaConf
from PIL import Image
from scipy.io import savemat

from tests.conftest import CONF, compose_config, read_jsonl, run_cli

PRESETS = sorted(path.stem for path in (CONF / "experiment").glob("*.yaml"))
DATASETS = sorted(path.stem for path in (CONF / "dataset").glob("*.yaml"))


def task_of(overrides: list[str]) -> str:
    return compose_config("compress", overrides).dataset.task


def unaccepted_keys(node) -> list[str]:
    """The keys of an instantiable config node (`_target_`) that its target's signature does not take."""
    settings = {key: value for key, value in node.items() if not key.startswith("_")}
    signature = inspect.signature(get_method(node._target_))
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return []
    return sorted(set(settings) - set(signature.parameters))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_with_every_dataset_of_its_task(preset):
    task = task_of([f"experiment={preset}"])
    datasets = [name for name in DATASETS if task_of([f"dataset={name}"]) == task]
    assert len(datasets) >= 2, f"{task}: expected a generated and a real dataset"
    for dataset in datasets:
        cfg = compose_config("compress", [f"experiment={preset}", f"dataset={dataset}"])
        OmegaConf.to_container(cfg, resolve=True)  # every interpolation (a dataset's size included) resolves
        data = cfg.dataset.datamodule
        reader = data.source if task == "classification" else cfg.dataset.reader
        assert unaccepted_keys(reader) == [], f"experiment={preset} dataset={dataset} passes them to {reader._target_}"
        assert unaccepted_keys(data) == [], f"experiment={preset} dataset={dataset} passes them to {data._target_}"


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
    run_cli(
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
    proc = run_cli("train.py", "dataset.size=tiny", f"paths.results={tmp_path}", f"paths.data={data}", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "edgecomp: error: dataset.size=tiny: dataset=synthetic_cls has the sizes full, smoke"
    assert not data.exists() and not (tmp_path / "runs").exists() and not (tmp_path / "records.jsonl").exists()
