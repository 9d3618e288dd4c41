"""Shared helpers: run the real entry points in a subprocess, compose configs in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

if "PYTEST_XDIST_WORKER" in os.environ:
    # Each xdist worker gets one core's worth of threads (the subprocesses it starts inherit it): two workers of two
    # threads each on two cores wait on each other.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def run_cli(script: str, *overrides: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python <script> <overrides>` from the repository root, as a user would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_SILENT": "true"}
    proc = subprocess.run(
        [sys.executable, str(REPO / script), *overrides],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(overrides)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
            f"--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def compose_config(config_name: str = "train", overrides: list[str] | None = None):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="test"):
        return compose(config_name=config_name, overrides=overrides or [])


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One cache of generated datasets for the whole session (generation is tested on its own)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Model-heavy test modules run on one thread: on a machine whose cores are shared, two threads that wait
    for each other are several times slower than one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
