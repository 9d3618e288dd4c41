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
# Where the real-data tests find COCO128 (the YOLO layout: images/, labels/, data.yaml): EDGECOMP_COCO128, or else a
# copy beside the repository's parent folder if there is one. Without either, those tests are skipped, saying why.
COCO128_VARIABLE = "EDGECOMP_COCO128"
COCO128_DEFAULT = REPO.parent / "shared" / "data" / "coco128"

if "PYTEST_XDIST_WORKER" in os.environ:
    # Each xdist worker gets one core's worth of threads (the subprocesses it starts inherit it): two workers of two
    # threads each on two cores wait on each other.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def run_cli(
    script: str, *overrides: str, check: bool = True, timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `python <script> <overrides>` from the repository root, as a user would (`env`: variables set on top of
    this process's environment)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_SILENT": "true", **(env or {})}
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


def train_then_compress(
    results: Path, data_dir: Path, preset: str, compressors: tuple[str, ...]
) -> tuple[list[str], dict, dict[str, dict]]:
    """`experiment=<preset>` trained once by train.py, then compressed by each compressor from its checkpoint, as a
    user would run them: (the overrides they shared, the trained record, {compressor: its record}). A compressor
    is its name, optionally followed by overrides (e.g. "ptq_int8 compressor.mixed_precision=latency")."""
    common = [f"experiment={preset}", f"paths.results={results}", f"paths.data={data_dir}", "logger=none"]
    run_cli("train.py", *common)
    (trained,) = read_jsonl(results / "records.jsonl")
    for compressor in compressors:  # a compressor's name, then any overrides of its settings
        name, *settings = compressor.split()
        run_cli("compress.py", *common, f"compressor={name}", *settings, f"checkpoint={trained['checkpoint']}")
    _, *compressed = read_jsonl(results / "records.jsonl")
    return common, trained, dict(zip(compressors, compressed, strict=True))


def recipe_stage_record(name: str, index: int, stage: dict, previous: dict, base: dict, seed: int = 0) -> dict:
    """A constructed record of stage `index` ("a", "b") of a two-stage recipe "r" (the report's waterfall tests)."""
    return {
        **stage,
        "task": "classification",
        "seed": seed,
        "model": "m",
        "dataset": "d",
        "device": "cpu",
        "compressor": name,
        "baseline": base,
        "previous": previous,
        "recipe": {"name": "r", "stage": name, "index": index, "stages": ["a", "b"]},
    }


def compose_config(config_name: str = "train", overrides: list[str] | None = None):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="test"):
        return compose(config_name=config_name, overrides=overrides or [])


def coco128_root() -> Path | None:
    """The COCO128 copy the real-data tests use, or None. A variable that names no folder is an error, not a skip:
    whoever set it meant those tests to run."""
    configured = os.environ.get(COCO128_VARIABLE)
    if configured:
        root = Path(configured).expanduser().resolve()
        if not (root / "data.yaml").is_file():
            pytest.fail(
                f"{COCO128_VARIABLE}={configured}: no COCO128 copy there (expected {root}/data.yaml)", pytrace=False
            )
        return root
    return COCO128_DEFAULT if (COCO128_DEFAULT / "data.yaml").is_file() else None


@pytest.fixture(scope="session")
def coco128() -> Path:
    """The real COCO128 copy; skips the test (with the reason in the summary) where there is none."""
    root = coco128_root()
    if root is None:
        pytest.skip(f"real-data test: set {COCO128_VARIABLE}=<a COCO128 copy> to run it")
    return root


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


@pytest.fixture
def ort_loads(monkeypatch) -> list:
    """Every ONNX file ONNX Runtime loads during the test, in order: (file name, layout optimisations on, the
    device's threads)."""
    from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime

    loads = []
    original = OnnxRuntime.load

    def load(self, artifact, device):
        loads.append((Path(artifact).name, self.layout_optimizations, device.threads))
        return original(self, artifact, device)

    monkeypatch.setattr(OnnxRuntime, "load", load)
    return loads


class RunsCode:
    """Unpickling this calls os.system (touching `marker`): what a crafted checkpoint holds, and what the
    weights-only unpickler must refuse before anything runs."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))
