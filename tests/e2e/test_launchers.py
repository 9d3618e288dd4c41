"""Across runs: a sweep's jobs as separate processes (Hydra's submitit launcher), the SLURM preset and ranks started
by SLURM rather than by edgecomp (tests/integration/test_optuna_sweep.py: a search with Hydra's Optuna sweeper, whose
trials run in the entry point's own process)."""

import os
import subprocess
import sys

import yaml
from hydra import compose, initialize_config_dir

from tests.conftest import CONF, EAGER, REPO, read_jsonl, run_cli
from tests.helpers.wandb_log import read_run


def test_a_submitit_local_sweep_runs_each_job_in_its_own_process_and_records_both(tmp_path, data_dir):
    """Each job is itself a DDP job of 2 ranks: its worker is given the job's config, not the command line (which
    here is submitit's, and would be the whole sweep's)."""
    run_cli(
        "train.py",
        "-m",
        "experiment=smoke",
        "hydra/launcher=submitit_local",
        "seed=1,2",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "logger=wandb",
        "trainer.max_epochs=1",
        EAGER,
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
    )
    records = read_jsonl(tmp_path / "records.jsonl")
    (sweep,) = (tmp_path / "multirun").iterdir()
    assert sorted(r["seed"] for r in records) == [1, 2]  # one record per job, not one per rank
    assert {r["config"]["trainer"]["devices"] for r in records} == {2}
    # each record says which job of which sweep it is
    assert {r["sweep"]["dir"] for r in records} == {str(sweep.resolve())}
    assert sorted(r["sweep"]["job"] for r in records) == [0, 1]
    # submitit ran two jobs (a folder of logs each), not this process
    assert len([p for p in (sweep / ".submitit").iterdir() if p.name != "%j"]) == 2
    runs = [read_run(path) for path in sorted((tmp_path / "wandb").glob("offline-run-*/*.wandb"))]
    assert len(runs) == 2 and {run["group"] for run in runs} == {sweep.name}  # the sweep's W&B runs stay grouped


def test_the_slurm_preset_gives_one_task_per_device_and_the_nodes_of_the_trainer():
    overrides = ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("compress", [*overrides, "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (4, 4, 2)
    assert launcher.partition == "gpu"
    for key in ("account", "qos", "timeout_min", "cpus_per_task", "mem_gb", "array_parallelism", "setup"):
        assert key in launcher
    # and on the command line, as a user checks it
    proc = run_cli("compress.py", *overrides, "--cfg", "hydra")
    shown = yaml.safe_load(proc.stdout)["hydra"]["launcher"]
    assert shown["tasks_per_node"] == "${trainer.devices}" and shown["nodes"] == "${trainer.num_nodes}"


def test_ranks_started_by_slurm_train_together_and_record_once(tmp_path, data_dir):
    """What srun does inside a SLURM job of the preset: start every task at once with its rank in SLURM's variables.
    Lightning's SLURM environment reads them; edgecomp launches nothing."""
    slurm = {
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "127.0.0.1",
        "SLURM_JOB_ID": str(40000 + os.getpid() % 9000),
        "SLURM_JOB_NAME": "train",
    }
    command = [
        sys.executable,
        str(REPO / "train.py"),
        "experiment=smoke",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger=none",
        EAGER,
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
    ]
    tasks = [
        subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, **slurm, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [task.communicate(timeout=300)[0] for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    assert record["config"]["trainer"]["devices"] == 2
    assert "edgecomp train" in outputs[0] and "edgecomp train" not in outputs[1]  # rank 0 measured and recorded
    assert "ddp_worker" not in outputs[0] + outputs[1]
