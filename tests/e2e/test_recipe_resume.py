"""compress.py recipe=NAME as processes: a recipe SIGKILLed mid-stage resumes there and records what an uninterrupted
run does; the detector's smoke recipe (slow) end to end."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecomp.pipelines.recipe import STAGE_DONE
from tests.conftest import REPO, RecipeRun, read_jsonl

# What a record of the same work may differ in between two runs: where its files are, when, and how fast.
UNREPEATABLE = {"artifact", "checkpoint", "created", "latency_ms", "export_time_s", "config"}


def _compress_process(results: Path, recipe: RecipeRun) -> subprocess.Popen:
    """`python compress.py` with the session's smoke recipe's config (its baseline reused), into `results`."""
    overrides = [o for o in recipe.overrides if not o.startswith("paths.results=")]
    command = [sys.executable, "compress.py", *overrides, f"paths.results={results}"]
    # one thread, as the in-process run (tests/helpers/recipe.py) that the kill/resume test compares with
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _comparable(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in UNREPEATABLE} | {
        "compression": {
            k: v
            for k, v in record["compression"].items()
            if k not in {"time_s", "rss_added_peak_bytes", "teacher_checkpoint"}  # a path in each run's own folder
        },
        "vs_baseline": {k: v for k, v in record["vs_baseline"].items() if k in {"params_ratio", "flops_ratio"}},
        "baseline": {k: v for k, v in record["baseline"].items() if k in {"metrics", "size_bytes", "params"}},
        "previous": {k: v for k, v in record["previous"].items() if k in {"metrics", "size_bytes", "params"}},
        "recipe": {k: v for k, v in record["recipe"].items()},
    }


def test_a_recipe_killed_mid_stage_resumes_there_and_records_what_an_uninterrupted_run_does(smoke_recipe, tmp_path):
    whole = smoke_recipe.returned  # the same recipe run uninterrupted (in-process, one thread)
    killed = _compress_process(tmp_path / "killed", smoke_recipe)
    deadline = time.monotonic() + 600
    # Killed once the first stage has finished, while the distillation stage runs.
    while not list((tmp_path / "killed").rglob(f"0-prune-*/{STAGE_DONE}")):
        assert killed.poll() is None and time.monotonic() < deadline, killed.communicate()[0][-3000:]
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not list((tmp_path / "killed").rglob(f"1-recover-*/{STAGE_DONE}"))  # it died inside the second stage
    first_stage = read_jsonl(tmp_path / "killed" / "records.jsonl")

    resumed = _compress_process(tmp_path / "killed", smoke_recipe)
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output[-3000:]
    assert "stage 0 'prune' finished before, reusing" in output

    records = read_jsonl(tmp_path / "killed" / "records.jsonl")
    assert records[: len(first_stage)] == first_stage  # the finished stage's record is kept, not written again
    assert [_comparable(r) for r in records] == [_comparable(r) for r in whole]


@pytest.mark.slow
def test_smoke_recipe_prunes_recovers_with_scalekd_and_quantizes_a_detector(tmp_path, data_dir):
    proc = subprocess.run(
        [
            sys.executable,
            "compress.py",
            "experiment=smoke_recipe",
            f"paths.results={tmp_path}",
            f"paths.data={data_dir}",
            "logger=none",
            "trainer.enable_progress_bar=false",
        ],  # fmt: skip
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    prune, recover, quantize = read_jsonl(tmp_path / "records.jsonl")
    assert prune["flops"] <= 0.67 * prune["baseline"]["flops"] and prune["params"] < prune["baseline"]["params"]
    # ScaleKD trained the pruned network itself: same (pruned) architecture, distilled from the unpruned baseline.
    assert recover["params"] == prune["params"] and recover["compression"]["student_start"] == "input"
    assert recover["distill"]["deployed_architecture_equal_baseline"]
    assert quantize["runtime"]["precision"] == "int8" and quantize["size_bytes"] <= 0.35 * recover["size_bytes"]
    assert {"map", "map_small"} <= set(quantize["metrics"])
    assert json.loads(json.dumps(recover["previous"]))["params"] == prune["params"]
