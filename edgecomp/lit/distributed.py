"""Data-parallel training in several processes (`trainer=ddp`), and what runs once, on the main process.

Lightning's DDP trains in N processes ("ranks"). An edgecomp job does more than train: it generates data, trains a
baseline and a teacher, distils, searches, then evaluates, times and records. So every rank runs the job's whole
pipeline in lockstep, and the pipeline says what happens where:

- `join(trainer_node, entry, cfg)`, at the start of a job (pipelines.common.start_job): when the trainer trains in
  several processes, the main process launches the others (`WorkerLauncher`: `python -m edgecomp.lit.ddp_worker`,
  which re-enters the same pipeline with the same config; under SLURM or torchrun the cluster starts them instead)
  and every rank joins one process group, before any training, so each `trainer.fit` of the job is collective and
  nothing runs twice by accident.
- `on_main(work)`: work done by the main process alone (a search, writing a stage's files) while the others wait
  idle (they poll the process group's store; a blocked collective would time out during a long search).
- `release_workers()`, after a job's last collective: the other ranks stop there; the main process goes on alone
  once they have exited, so that evaluation, latency and the record are measured with no other rank computing, with
  the thread count it had before training.

Lightning's own launcher re-runs `sys.argv`, which under Hydra repeats a multirun's whole sweep in every child (and
under a submitit launcher runs submitit's entry point): the worker here is given the job's composed config instead.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, overload

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy as _LightningDDPStrategy
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("edgecomp")
T = TypeVar("T")

WORKER_MODULE = "edgecomp.lit.ddp_worker"
POLL_S = 0.5  # how often a waiting rank asks whether the main process is done (it sleeps in between)
# What the launcher sets in the main process's environment for its process group, removed again when the job ends:
# the next job of a multirun in the same process must not take itself for a rank of this one.
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "OMP_NUM_THREADS")
_DONE, _FAILED = b"done", b"failed"


@dataclass
class _Job:
    """The running job as a DDP worker re-enters it: the pipeline's `module:function` and its composed config."""

    entry: str
    config: dict[str, Any]
    environment: dict[str, str | None] = field(default_factory=dict)  # LAUNCH_ENV before the launch
    threads: int = 1  # torch's intra-op threads before the launch (Lightning divides the cores among the ranks)
    workers: list[subprocess.Popen] = field(default_factory=list)  # the ranks this process launched
    spec: Path | None = None  # the file they were given (removed when the job ends)
    sections: int = 0  # on_main sections so far: every rank counts the same ones, in the same order


_job: _Job | None = None


# ----------------------------------------------------------------------------------------------- who is where


def is_distributed() -> bool:
    """Whether this process is one rank of a live process group of several."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (a no-op in one process)."""
    if is_distributed():
        dist.barrier()


# ----------------------------------------------------------------------------------------------- launching


def _die_with_parent() -> None:
    """In a launched worker, before it runs: die when the main process dies (SIGKILL, a lost job), instead of waiting
    in a collective for a rank that will never come."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: the main process's observer thread still ends the workers if one fails
        pass


class WorkerLauncher(_SubprocessScriptLauncher):
    """Lightning's launcher of the other local ranks, each running `python -m edgecomp.lit.ddp_worker SPEC`: the same
    pipeline, entered with the job's config (written to SPEC), from the same working directory."""

    def _call_children_scripts(self) -> None:
        self._check_can_spawn_children()
        if _job is None:
            raise RuntimeError("trainer=ddp: a DDP job must be started by edgecomp.lit.distributed.join()")
        env = self.cluster_environment
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        os.environ["NODE_RANK"] = str(env.node_rank())
        os.environ["LOCAL_RANK"] = str(env.local_rank())
        os.environ["WORLD_SIZE"] = str(self.num_processes * self.num_nodes)
        spec = _job.spec = _write_spec(_job)
        for local_rank in range(1, self.num_processes):
            child_env = {**os.environ, "LOCAL_RANK": str(local_rank)}
            command = [sys.executable, "-m", WORKER_MODULE, str(spec)]
            proc = subprocess.Popen(command, env=child_env, cwd=os.getcwd(), preexec_fn=_die_with_parent)
            self.procs.append(proc)
            _job.workers.append(proc)


class DDPStrategy(_LightningDDPStrategy):
    """Lightning's DDP strategy (gloo on CPU, NCCL on GPUs) whose local ranks are launched by `WorkerLauncher`.
    Under SLURM or torchrun the cluster environment starts every rank itself and nothing is launched."""

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        environment = self.cluster_environment
        if environment is None:  # Lightning sets it when it builds the strategy, before this runs
            raise RuntimeError("DDPStrategy: no cluster environment to launch the local ranks in")
        if not environment.creates_processes_externally:
            self._launcher = WorkerLauncher(environment, self.num_processes, self.num_nodes)


def _write_spec(job: _Job) -> Path:
    fd, name = tempfile.mkstemp(prefix="edgecomp-ddp-", suffix=".json")
    with os.fdopen(fd, "w") as out:
        json.dump({"entry": job.entry, "config": job.config}, out)
    return Path(name)


def read_spec(path: str | os.PathLike) -> tuple[str, DictConfig]:
    """(entry, config) of the job a worker joins (written by the main process's launcher)."""
    spec = json.loads(Path(path).read_text())
    return spec["entry"], OmegaConf.create(spec["config"])


def join(trainer: Any, entry: str, cfg: DictConfig) -> None:
    """Start (the main process) or join (a worker) the job's process group when `trainer`, the job's Lightning
    Trainer, trains in several processes; nothing otherwise. `entry` (`module:function`) and `cfg` are what a launched
    worker runs: `function(cfg)`."""
    global _job
    strategy = trainer.strategy
    processes = len(getattr(strategy, "parallel_devices", None) or []) * getattr(strategy, "num_nodes", 1)
    if processes < 2:
        return
    if not isinstance(strategy, DDPStrategy):
        from edgecomp.errors import ConfigError

        raise ConfigError(
            f"trainer.strategy={type(strategy).__name__} with {processes} processes: use trainer=ddp (edgecomp's DDP "
            "strategy, which runs the whole job in every rank and measures once, on rank 0)"
        )
    _job = _Job(
        entry,
        cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=False)),  # a DictConfig converts to a dict
        environment={key: os.environ.get(key) for key in LAUNCH_ENV},
        threads=torch.get_num_threads(),
    )
    launcher = strategy.launcher  # the Trainer configured it (WorkerLauncher)
    if launcher is None:
        raise RuntimeError("the trainer's DDP strategy has no launcher: join() runs after the Trainer is built")
    launcher.launch(strategy.setup_environment)
    log.info("rank %d of %d joined the job's process group (%s)", rank(), world_size(), dist.get_backend())


# ----------------------------------------------------------------------------------------------- what runs where


@overload
def on_main(work: Callable[[], T], what: str, share: Literal[True]) -> T: ...


@overload
def on_main(work: Callable[[], T], what: str, share: bool = False) -> T | None: ...


def on_main(work: Callable[[], T], what: str, share: bool = False) -> T | None:
    """`work()` in the main process alone; the other ranks wait, idle, until it is done. Returns its result in the
    main process and, with `share` (a small picklable result, e.g. a search's state), in every rank; otherwise None
    in the others. If it fails in the main process, the others raise too. In one process: `work()`."""
    if not is_distributed():
        return work()
    assert _job is not None
    _job.sections += 1
    key = f"edgecomp/main/{_job.sections}"
    store = dist.distributed_c10d._get_default_store()
    if is_main():
        try:
            result = work()
        except BaseException:
            store.set(key, _FAILED)  # type: ignore[arg-type]  # torch's stub says str; the binding takes bytes too
            raise
        if share:
            store.set(f"{key}/result", pickle.dumps(result))  # type: ignore[arg-type]  # (bytes, as above)
        store.set(key, _DONE)  # type: ignore[arg-type]  # (bytes, as above)
        return result
    log.info("rank %d: waiting for rank 0 (%s)", rank(), what)
    while not store.check([key]):
        time.sleep(POLL_S)
    if store.get(key) == _FAILED:
        raise RuntimeError(f"rank 0 failed while {what}")
    return pickle.loads(store.get(f"{key}/result")) if share else None


def release_workers() -> bool:
    """After a job's last collective (its last training): every rank but the main one stops here (returns False);
    the main process returns True once the ranks it launched have exited and the process group is gone, with the
    threads and environment it had before, so that what it measures next runs with no other rank computing. In one
    process: True."""
    if not is_distributed():
        return True
    barrier()
    if not is_main():
        return False  # it leaves the process group when its job ends (end(), in pipelines.common.run_job)
    end()
    return True


def end(failed: bool = False) -> None:
    """The job is over: wait for the workers this process launched (or, if the job `failed`, end them: they would
    wait in a collective for this rank), leave the process group, restore the environment and threads. Idempotent."""
    global _job
    if _job is None:
        return
    job, _job = _job, None
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for proc in job.workers:
        if failed:
            proc.kill()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            log.warning("ending DDP worker %d, still running after the job", proc.pid)
            proc.kill()
            proc.wait()
    if job.spec is not None:
        job.spec.unlink(missing_ok=True)
    for key, value in job.environment.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    torch.set_num_threads(job.threads)
