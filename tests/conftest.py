"""What the tests share: the tiers' markers, the entry points run in a subprocess or in this process, composed
configs, a compressor's context built from a config, and the caches of generated data and trained baselines that the
test files (and pytest-xdist's workers) share.

The tiers are the folders: tests/unit (no training, no subprocess, no generated dataset: well under a second or two
a test), tests/integration (in-process, small fixtures: tiny models, a step or two, generated tiny data, a
compressor given a context) and tests/e2e (through the command line: the entry points in processes of their own).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import functools
import hashlib
import importlib.util
import io
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest
import torch
from hydra import compose, initialize_config_dir

if TYPE_CHECKING:
    from omegaconf import DictConfig
    from torch import nn

    from edgecomp.compress.context import CompressionContext

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
TESTS = REPO / "tests"
TIERS = ("unit", "integration", "e2e")
# Where the real-data tests find COCO128 (the YOLO layout: images/, labels/, data.yaml): EDGECOMP_COCO128, or else a
# copy beside the repository's parent folder if there is one. Without either, those tests are skipped, saying why.
COCO128_VARIABLE = "EDGECOMP_COCO128"
COCO128_DEFAULT = REPO.parent / "shared" / "data" / "coco128"
# The device of the runs whose subject is the process or the orchestration (a kill and a resume, DDP ranks, a sweep's
# launcher, a teacher reused across runs): eager PyTorch. What they test does not depend on the runtime, and an ONNX
# export per run (the dynamo exporter: ~8 s for the smoke model on 2 cores) would be most of their time; the
# deployment to ONNX Runtime is what the other entry-point and deployment tests run.
EAGER = "device=cpu_torch"

if "PYTEST_XDIST_WORKER" in os.environ:
    # Each xdist worker gets one core's worth of threads (the subprocesses it starts inherit it): two workers of two
    # threads each on two cores wait on each other. That holds for the training (OMP_NUM_THREADS) and for the
    # latency measurements, which device=cpu and device=cpu_torch otherwise pin at 2 threads (EDGECOMP_THREADS):
    # measured on 2 cores of an AMD EPYC, the fast tier took 9 min 3 s and 9 min 14 s with the measurements at 2
    # threads, 7 min 59 s at 1 (docs/figures.md).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("EDGECOMP_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by the markers
def pytest_collection_modifyitems(config, items):
    """Mark every test with its tier, the folder it is in (`-m unit`, `-m 'integration or e2e'`); a test file
    outside the tiers' folders is an error, so that every test is in exactly one tier."""
    for item in items:
        try:
            tier = item.path.relative_to(TESTS).parts[0]
        except ValueError:
            continue  # a test outside tests/ (a path given on the command line)
        if tier not in TIERS:
            raise pytest.UsageError(
                f"{item.path.relative_to(REPO)}: a test file belongs in one of the tiers' folders, tests/"
                + ", tests/".join(TIERS)
                + " (tests/conftest.py says what goes where)"
            )
        item.add_marker(getattr(pytest.mark, tier))


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


_ENTRY_POINTS: dict[str, ModuleType] = {}


def _entry_point(script: str) -> ModuleType:
    """The entry point script (train.py, compress.py, evaluate.py) loaded as a module, once per process."""
    if script not in _ENTRY_POINTS:
        spec = importlib.util.spec_from_file_location(f"_edgecomp_entry_{Path(script).stem}", REPO / script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        task = module.main
        while hasattr(task, "__wrapped__"):
            task = task.__wrapped__
        task.__module__ = "__main__"  # Hydra finds conf/ beside the script's file, as when it runs as a script
        _ENTRY_POINTS[script] = module
    return _ENTRY_POINTS[script]


def run_in_process(
    script: str, *overrides: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python <script> <overrides>` run by this process, as run_cli runs it in a new one: the script's own Hydra
    main on that command line, from the repository root, its stdout, stderr (the logging Hydra sets up included)
    and exit status captured, Hydra's and edgecomp's error handling as on the command line. What it saves is a new
    interpreter's start-up (the imports of torch, Lightning and Hydra: seconds each time). What is about the
    process itself (its start-up, a kill, several ranks or jobs in processes of their own) stays with run_cli."""
    from hydra._internal import utils as hydra_utils
    from hydra.core.global_hydra import GlobalHydra

    argv, cwd, environ = sys.argv, Path.cwd(), dict(os.environ)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stdout, stderr = io.StringIO(), io.StringIO()
    os.environ.update({"PYTHONUNBUFFERED": "1", "WANDB_SILENT": "true", **(env or {})})
    sys.argv = [str(REPO / script), *overrides]
    os.chdir(REPO)
    under_debugger = hydra_utils.is_under_debugger
    # Hydra re-raises instead of reporting under a tracer (coverage's counts as one): report as on the command line.
    hydra_utils.is_under_debugger = lambda: False
    returncode = 0
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                _entry_point(script).main()
            except SystemExit as exit_:
                code = exit_.code
                returncode = code if isinstance(code, int) else (0 if code is None else 1)
                if isinstance(code, str):
                    print(code, file=sys.stderr)
    finally:
        hydra_utils.is_under_debugger = under_debugger
        sys.argv = argv
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environ)
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        GlobalHydra.instance().clear()
    proc = subprocess.CompletedProcess(sys.argv[:1] + list(overrides), returncode, stdout.getvalue(), stderr.getvalue())
    if check and returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(overrides)} exited {returncode} (in-process)\n--- stdout\n{proc.stdout[-4000:]}\n"
            f"--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class TrainedRun:
    """A train.py run of the session's cache (the `trained` fixture): its results folder (records.jsonl with its one
    record, runs/, deployed/), that record and what the run printed."""

    results: Path
    record: dict
    stdout: str

    @property
    def checkpoint(self) -> str:
        return self.record["checkpoint"]

    @property
    def runs(self) -> Path:
        """Its run folders: `paths.runs=` this, and a pipeline with the same training config reuses the run."""
        return self.results / "runs"


def train_then_compress(
    trained: Callable[..., TrainedRun], results: Path, data_dir: Path, preset: str, compressors: tuple[str, ...]
) -> tuple[list[str], dict, dict[str, dict]]:
    """`experiment=<preset>` trained by train.py (once per session: the `trained` fixture), then compressed by each
    compressor from its checkpoint, as compress.py runs them (in this process) into `results`: (the overrides they
    shared, the trained record, {compressor: its record}). A compressor is its name, optionally followed by overrides
    (e.g. "ptq_int8 compressor.mixed_precision=latency")."""
    baseline = trained(preset)
    common = [f"experiment={preset}", f"paths.results={results}", f"paths.data={data_dir}", "logger=none"]
    for compressor in compressors:  # a compressor's name, then any overrides of its settings
        name, *settings = compressor.split()
        run_in_process("compress.py", *common, f"compressor={name}", *settings, f"checkpoint={baseline.checkpoint}")
    compressed = read_jsonl(results / "records.jsonl")
    return common, baseline.record, dict(zip(compressors, compressed, strict=True))


def compose_config(config_name: str = "train", overrides: list[str] | None = None) -> DictConfig:
    """The config `<config_name>.py <overrides>` composes (a copy of its own: the caller may change it). Composing
    takes Hydra a good fraction of a second; a composition asked for again in this process is copied from the first."""
    return copy.deepcopy(_composed(config_name, tuple(overrides or ())))


@functools.cache
def _composed(config_name: str, overrides: tuple[str, ...]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="test"):
        return compose(config_name=config_name, overrides=list(overrides))


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


@contextlib.contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `lock` (created if need be): one process at a time, the others wait."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory) -> Path:
    """A folder of this test session that all of its pytest-xdist workers see (a worker's own temporary folders are
    in a subfolder of the session's): where the caches the workers share live."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / "shared"
    shared.mkdir(exist_ok=True)
    return shared


@pytest.fixture(scope="session", autouse=True)
def shared_deployments(shared_dir) -> Iterator[Path]:
    """One folder of deployed files (ONNX exports) for every run the session starts, in this process or in a new one
    (EDGECOMP_DEPLOYED, the default of paths.deployed): a file is named by the weights it holds, so the session's
    many runs of one baseline (the same seed gives the same weights) export it once instead of once per results
    folder. A test about where a run puts its files sets paths.deployed itself."""
    deployed = shared_dir / "deployed"
    previous = os.environ.get("EDGECOMP_DEPLOYED")
    os.environ["EDGECOMP_DEPLOYED"] = str(deployed)
    _composed.cache_clear()  # a composition made before this was set resolves to each run's own folder
    yield deployed
    if previous is None:
        os.environ.pop("EDGECOMP_DEPLOYED", None)
    else:
        os.environ["EDGECOMP_DEPLOYED"] = previous


@pytest.fixture(scope="session")
def random_mobilenet(shared_dir) -> tuple[nn.Module, Path]:
    """MobileNetV3-Small (10 classes, seed 0, random init, eval mode) and its FP32 ONNX file at 64 px: exported once
    per session, by whichever worker asks first (the dynamo exporter takes ~7 s), the same weights built again by
    the others from the seed. The file is shared: a test writes what it derives from it to a folder of its own."""
    from edgecomp.evaluate.onnx_export import export_onnx
    from edgecomp.models.timm_classifier import create_classifier

    torch.manual_seed(0)
    model = create_classifier("mobilenetv3_small_100", num_classes=10).eval()
    path = shared_dir / "random_mobilenet" / "fp32.onnx"
    with exclusive(shared_dir / "random_mobilenet.lock"):  # outside the file's folder, which holds the file alone
        if not path.exists():  # export_onnx renames the file into place once it is complete
            export_onnx(model, path, 64)
    return model, path


@pytest.fixture(scope="session")
def data_dir(shared_dir) -> Path:
    """One cache of generated datasets for the whole session, every worker's (a dataset is generated into a folder
    renamed into place when complete, so two processes may ask for it at once: edgecomp.data.cache, tested on its
    own)."""
    data = shared_dir / "data"
    data.mkdir(exist_ok=True)
    return data


def share_deployments(folder: Path, shared: Path) -> None:
    """The deployed files in `folder` also in the session's shared folder (hard links: the same bytes), for the runs
    that deploy the same weights later."""
    shared.mkdir(parents=True, exist_ok=True)
    for file in folder.glob("*.onnx"):
        target = shared / file.name
        if not target.exists():
            tmp = target.with_name(f".{file.name}.link{os.getpid()}")
            os.link(file, tmp)
            os.replace(tmp, target)


@pytest.fixture(scope="session")
def trained(shared_dir, data_dir, shared_deployments) -> Callable[..., TrainedRun]:
    """`trained(preset, *overrides)`: `python train.py experiment=<preset> <overrides>` run once per session (in the
    process of whichever test, of whichever worker, asks first: run_in_process), the others wait for it and get the
    same run. Its results are shared: a test writes what it does with them to results of its own
    (`paths.results=...`), starting from `checkpoint=<its checkpoint>` or reusing the run with `paths.runs=<its
    runs>`."""

    def train(preset: str, *overrides: str) -> TrainedRun:
        key = hashlib.sha256("\n".join((preset, *overrides)).encode()).hexdigest()[:12]
        results = shared_dir / "trained" / f"{preset}-{key}"
        printed = results / "train.stdout"  # written last: the run is complete
        with exclusive(results.with_name(f"{results.name}.lock")):
            if not printed.exists():
                shutil.rmtree(results, ignore_errors=True)  # an earlier attempt that failed
                # Its deployed files in its own results (what a test of train.py's record reads), then shared
                proc = run_in_process(
                    "train.py", f"experiment={preset}", f"paths.results={results}", f"paths.data={data_dir}",
                    f"paths.deployed={results / 'deployed'}", *overrides,
                )  # fmt: skip
                share_deployments(results / "deployed", shared_deployments)
                printed.write_text(proc.stdout)
        (record,) = read_jsonl(results / "records.jsonl")
        return TrainedRun(results, record, printed.read_text())

    return train


@dataclass(frozen=True)
class RecipeRun:
    """The session's run of the smoke classifier recipe (the `smoke_recipe` fixture)."""

    results: Path  # its results: records.jsonl, stages/
    returned: list[dict]  # what compress.py's run returned
    starts: list[tuple[str, dict]]  # the state every fine-tune started from (tests/helpers/recipe.py)
    overrides: list[str]  # its config's overrides: a run with them reuses its baseline and its stages


@pytest.fixture(scope="session")
def smoke_recipe(shared_dir, data_dir, trained) -> RecipeRun:
    """tests/helpers/recipe.py's smoke classifier recipe (prune, KD recovery, INT8) run in-process once per session,
    by whichever test (of whichever worker) asks first, from the session's smoke baseline (`trained`); what it
    returned and the state each fine-tune started from are kept beside its results for the others."""
    from tests.helpers.recipe import SMOKE_CLASSIFIER_RECIPE, run_recording_starts

    results = shared_dir / "recipe"
    overrides = [
        *SMOKE_CLASSIFIER_RECIPE,
        f"paths.results={results}",
        f"paths.data={data_dir}",
        f"paths.runs={trained('smoke').runs}",
    ]
    kept = shared_dir / "recipe.pt"  # written last: the run is complete
    with exclusive(shared_dir / "recipe.lock"):
        if not kept.exists():
            shutil.rmtree(results, ignore_errors=True)
            returned, starts = run_recording_starts(compose_config("compress", overrides))
            torch.save({"returned": returned, "starts": starts}, kept)
    run = torch.load(kept, weights_only=False)  # this session's own file
    return RecipeRun(results, run["returned"], run["starts"], overrides)


def compression_context_of(cfg: DictConfig, data: bool = True) -> CompressionContext:
    """What compress.py gives the compressor of `cfg` (edgecomp.pipelines.compress.compression_context), built from
    the config alone, without a job: the run's seed set as a job sets it, its device, evaluator and training, its
    datamodule set up for fitting (None with `data=False`, for what reads only the configs), a work folder under
    paths.results."""
    import lightning.pytorch as pl

    from edgecomp.compress.context import CompressionContext
    from edgecomp.config import build, resolved_config
    from edgecomp.lit.training import Training

    config = resolved_config(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = None
    if data:
        datamodule = build(cfg.dataset.datamodule)
        datamodule.setup("fit")
    return CompressionContext(
        task=cfg.task,
        model_config=cfg.model,
        teacher_config=cfg.get("teacher"),
        datamodule=datamodule,
        device=build(cfg.device),
        evaluator=build(cfg.dataset.evaluator),
        training=Training(cfg, config, datamodule, build(cfg.logger)),
        work_dir=Path(cfg.paths.results) / "artifacts" / cfg.compressor.name,
        deploy_dir=Path(cfg.paths.deployed),
    )


@pytest.fixture
def compression_context_for(tmp_path, data_dir) -> Callable[..., tuple[DictConfig, CompressionContext]]:
    """`compression_context_for(*overrides, data=True)`: the config `compress.py <overrides>` composes (results in
    the test's tmp_path, the session's generated data, no experiment logger unless an override names one) and the
    context its compressor is given (compression_context_of): (config, context)."""

    def context_for(*overrides: str, data: bool = True) -> tuple[DictConfig, CompressionContext]:
        cfg = compose_config(
            "compress", [f"paths.results={tmp_path}", f"paths.data={data_dir}", "logger=none", *overrides]
        )
        return cfg, compression_context_of(cfg, data)

    return context_for


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


@pytest.fixture(scope="module")
def ssh_board_server():
    """A real OpenSSH server on 127.0.0.1 to measure on with device=remote (tests/helpers/ssh_board.py), one per test
    module: skipped, saying why, where scripts/install_test_board.sh has not run (failed under
    EDGECOMP_REQUIRE_BOARD=1)."""
    from tests.helpers.ssh_board import remove_board, start_board

    board = start_board()
    yield board
    remove_board(board)


@pytest.fixture
def ssh_board(ssh_board_server):
    """The module's board, running (a test that stopped it and failed before starting it again left it stopped)."""
    ssh_board_server.ensure_running()
    return ssh_board_server
