"""trainer=ddp: every rank runs the job, the training is split across them, and what is measured and recorded is
measured once, by rank 0, after the other ranks are gone (edgecomp.lit.distributed). Two CPU processes, gloo."""

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import torch

from tests.conftest import EAGER, REPO, read_jsonl, run_cli

DDP = ["trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]


def ddp_workers(results: Path) -> list[psutil.Process]:
    """Launched DDP ranks still alive of the jobs writing to `results` (their spec, the last argument, names the job's
    config; other tests may run DDP jobs meanwhile)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "edgecomp.lit.ddp_worker" not in cmdline or proc.status() == psutil.STATUS_ZOMBIE:
            continue
        try:
            spec = json.loads(Path(cmdline[-1]).read_text())
        except (OSError, ValueError):
            continue  # its job has ended (the spec is removed then): not one of these
        if spec["config"]["paths"]["results"] == str(results):
            found.append(proc)
    return found


def test_rank_0_goes_on_alone_once_the_workers_have_exited(tmp_path):
    out = tmp_path / "seen.json"
    subprocess.run(
        [sys.executable, "-m", "tests.helpers.ddp_entry", str(out), "3"],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )
    seen = json.loads(out.read_text())
    assert seen["world"] == 2
    # The worker sleeps 3 s after its release: rank 0 saw none alive only because it waited for it
    assert seen["workers_alive"] == []
    assert seen["group_left"] and seen["env_left"] == []  # a multirun's next job starts clean
    # The main-only section ran once, in rank 0, and its result reached the other rank
    assert len(out.with_suffix(".sections").read_text().split()) == 1
    assert seen["shared"] == {"chosen": 42}
    assert json.loads(out.with_suffix(".worker").read_text())["shared"] == {"chosen": 42}


@pytest.mark.slow  # three 2-rank runs (90 s); the fast tier's DDP compress runs check the one record
def test_ddp_train_writes_one_record_and_a_sigkilled_run_resumes_to_the_same_result(tmp_path, data_dir):
    common = ["experiment=smoke", "trainer.max_epochs=2", "logger=none", f"paths.data={data_dir}", *DDP]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run_cli("train.py", *common, f"paths.results={straight}")
    (a,) = read_jsonl(straight / "records.jsonl")  # one record, not one per rank
    assert a["config"]["trainer"]["devices"] == 2 and a["latency_ms"]["median"] > 0

    # Rank 0 is SIGKILLed at the start of epoch 1 (epoch 0 checkpointed); rank 1 dies with it.
    proc = run_cli(
        "train.py",
        *common,
        f"paths.results={killed}",
        "+callbacks.kill={_target_: tests.helpers.crash.SigkillAtEpochStart, epoch: 1}",
        check=False,
    )
    assert proc.returncode == -9 and not (killed / "records.jsonl").exists()
    assert ddp_workers(killed) == []
    resumed = run_cli("train.py", *common, f"paths.results={killed}", "resume=true")
    assert "Restored all states from the checkpoint" in resumed.stdout + resumed.stderr

    (b,) = read_jsonl(killed / "records.jsonl")
    weights_a = torch.load(a["checkpoint"], weights_only=True)["state_dict"]
    weights_b = torch.load(b["checkpoint"], weights_only=True)["state_dict"]
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert a["metrics"] == b["metrics"]


@pytest.mark.parametrize(
    "preset",
    [
        # The classifier's run is the detector's with another LightningModule: the same DDP paths (every model
        # trained in both ranks, the teacher's wait, one record), so the fast tier runs the detector's alone.
        pytest.param(
            ["experiment=smoke", "compressor=kd", "teacher=mobilenetv3_large_100", "compressor.epochs=1"],
            id="kd",
            marks=pytest.mark.slow,
        ),
        # The small teacher (the same code as YOLOv8s', at a third of its cost)
        pytest.param(["experiment=smoke_scalekd", "teacher=yolov8n"], id="scalekd"),
    ],
)
def test_ddp_compress_trains_every_model_in_both_ranks_and_records_once(preset, tmp_path, data_dir):
    # one epoch for the baseline, the teacher and the student each
    proc = run_cli(
        "compress.py",
        *preset,
        "trainer.max_epochs=1",
        "logger=none",
        EAGER,
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
        *DDP,
    )
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    assert record["baseline"]["metrics"] and record["compression"]["teacher"]
    # One worker, which trained the baseline and the teacher (then the student) with rank 0
    assert proc.stderr.count("[rank 1] INFO edgecomp: rank 1 of 2 joined") == 1
    for role in ("baseline", "teacher"):
        assert f"[rank 1] INFO edgecomp: no finished {role} for this config" in proc.stderr
    assert ddp_workers(tmp_path) == []


@pytest.mark.slow
def test_ddp_recipe_searches_on_rank_0_trains_in_both_and_records_each_stage_once(tmp_path, data_dir):
    """prune (FastNAS: the search in rank 0, the fine-tune in both) -> ScaleKD (both) -> INT8 (rank 0 alone)."""
    proc = run_cli(
        "compress.py",
        "experiment=smoke_recipe",
        "logger=none",
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
        *DDP,
        timeout=600,
    )
    records = read_jsonl(tmp_path / "records.jsonl")
    assert [r["recipe"]["stage"] for r in records] == ["prune", "recover", "quantize"]
    assert records[0]["flops"] < records[0]["baseline"]["flops"]  # the subnet rank 0 found, fine-tuned by both
    assert "[rank 1] INFO edgecomp: rank 1: waiting for rank 0 (searching with FastNAS)" in proc.stderr
    assert ddp_workers(tmp_path) == []


def test_lightnings_own_ddp_launcher_is_refused_before_any_training(tmp_path, data_dir):
    """It would re-run the command line in every child (a multirun's whole sweep) and measure in every rank."""
    proc = run_cli(
        "train.py",
        "experiment=smoke",
        "+trainer.strategy=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
        check=False,
    )
    assert proc.returncode == 1 and "use trainer=ddp" in proc.stderr
    assert not (tmp_path / "runs").exists()
