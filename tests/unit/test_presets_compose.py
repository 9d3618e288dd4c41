"""Presets (`experiment=...`) compose with every dataset of their task: a key only a generated dataset reads (how
many images to generate) lives in that dataset's config as a named size, so a preset on a real dataset passes no
generator setting to its reader (tests/integration/test_presets.py: a preset run on a real dataset's copy)."""

from __future__ import annotations

import inspect

import pytest
from hydra.utils import get_method
from omegaconf import OmegaConf

from tests.conftest import CONF, compose_config

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
