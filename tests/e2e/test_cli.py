"""The entry points as a user runs them: train, then evaluate the checkpoint, then sweeps and bad input
(tests/integration/test_entry_points.py: more of their command lines, run in-process)."""

from pathlib import Path

import pytest
import torch

from edgecomp.evaluate.record import LATENCY_FIELDS, REQUIRED_FIELDS
from tests.conftest import EAGER, read_jsonl, run_cli, run_in_process
from tests.helpers.wandb_log import read_run


@pytest.fixture(scope="module")
def smoke_run(trained):
    """`python train.py experiment=smoke`, run once per session (its results are shared with other test files'):
    (its results folder, what it printed)."""
    run = trained("smoke")
    return run.results, run.stdout


# The smoke evaluation split: 8 images of each of the 10 classes.
EVAL_IMAGES = 80


def check_complete(record, dataset="synthetic_cls", model="mobilenetv3_small_100", paired=False):
    assert set(REQUIRED_FIELDS) <= set(record)
    assert record["task"] == "classification" and record["dataset"] == dataset and record["model"] == model
    assert record["compressor"] == "none" and record["device"] == "cpu" and record["hardware"]
    # top-1 over the whole split: a whole number of its 80 images (an average of per-batch accuracies over batches
    # of 32, 32 and 16 images, or a split cut short, would in general not be)
    correct = record["metrics"]["top1"] * EVAL_IMAGES
    assert 0 <= round(correct) <= EVAL_IMAGES and correct == pytest.approx(round(correct), abs=1e-4)
    assert isinstance(record["params"], int) and record["params"] > 1_000_000  # mobilenetv3_small: ~1.5 M
    assert isinstance(record["flops"], int) and record["flops"] > record["params"]
    latency = record["latency_ms"]
    assert set(LATENCY_FIELDS) <= set(latency)
    # One timing: 10 passes after 1 warm-up; a side of a paired comparison: the smoke preset's 5 rounds of 1 warm-up
    # and 2 timed passes
    runs = 10
    assert (latency["runs"], latency["warmup"], latency["images"]) == (runs, 1, 16)
    assert latency.get("rounds") == (5 if paired else None)
    # The statistics are those of the timed passes recorded beside them, the median's interval among them
    passes = latency["passes_ms_per_image"]
    assert len(passes) == runs and min(passes) <= latency["median"] <= latency["p90"] <= max(passes)
    # x(k)..x(n+1-k), k the largest with binomial coverage >= 95 %: k = 2 of 10 (97.9 %)
    k = 2
    assert [sorted(passes)[k - 1], sorted(passes)[runs - k]] == latency["ci95"]
    assert min(passes) <= latency["mean"] <= max(passes)
    assert isinstance(record["size_bytes"], int) and 0 < record["gzip_bytes"] < record["size_bytes"]
    assert record["params"] * 4 < record["size_bytes"] < record["params"] * 4 * 1.1  # FP32 weights, no optimiser
    assert record["config"]["model"]["name"] == model and record["config"]["seed"] == record["seed"]


def test_train_appends_a_complete_record_for_its_checkpoint(smoke_run):
    results, stdout = smoke_run
    (record,) = read_jsonl(results / "records.jsonl")
    check_complete(record)
    # Deployed as device=cpu deploys: the checkpoint's weights exported to ONNX, run by ONNX Runtime
    assert Path(record["checkpoint"]).is_file() and record["checkpoint"].endswith(".ckpt")
    assert Path(record["artifact"]).is_file() and Path(record["artifact"]).parent == results / "deployed"
    assert record["artifact"].endswith(".onnx") and record["size_bytes"] == Path(record["artifact"]).stat().st_size
    assert (record["runtime"]["runtime"], record["runtime"]["provider"]) == ("onnxruntime", "CPUExecutionProvider")
    assert record["export_time_s"] > 0  # exported in this run, and the record says how long it took
    assert "edgecomp train" in stdout and "records.jsonl line 1" in stdout  # the summary
    assert list((results / "csv").rglob("metrics.csv")), "logger=csv (the default) writes Lightning's CSV logs"


def test_evaluate_reproduces_the_checkpoint_accuracy(smoke_run, data_dir, tmp_path):
    results, _ = smoke_run
    trained = read_jsonl(results / "records.jsonl")[0]
    run_cli(
        "evaluate.py",
        "experiment=smoke",
        f"paths.results={tmp_path}",  # its own records: the other tests that use smoke_run do not see this one
        f"paths.data={data_dir}",
        f"checkpoint={trained['checkpoint']}",
        "logger=none",
    )
    (evaluated,) = read_jsonl(tmp_path / "records.jsonl")
    check_complete(evaluated)
    assert evaluated["checkpoint"] == trained["checkpoint"]
    assert Path(evaluated["artifact"]).name == Path(trained["artifact"]).name  # the same weights, the same file name
    assert evaluated["metrics"]["top1"] == trained["metrics"]["top1"]
    assert (evaluated["params"], evaluated["flops"], evaluated["size_bytes"]) == (
        trained["params"],
        trained["flops"],
        trained["size_bytes"],
    )


def test_multirun_gives_one_job_and_one_wandb_run_per_seed(tmp_path, data_dir):
    proc = run_cli(
        "train.py",
        "-m",
        "experiment=smoke",
        "seed=1,2",
        "logger=wandb",
        "trainer.max_epochs=1",
        EAGER,
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
    )
    records = read_jsonl(tmp_path / "records.jsonl")
    assert sorted(r["seed"] for r in records) == [1, 2]
    assert records[0]["checkpoint"] != records[1]["checkpoint"]
    (sweep,) = (tmp_path / "multirun").iterdir()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]  # two Hydra jobs

    runs = [read_run(path) for path in sorted((tmp_path / "wandb").glob("offline-run-*/*.wandb"))]
    assert len(runs) == 2, proc.stdout[-2000:]  # each job finished its own run
    assert {run["group"] for run in runs} == {sweep.name} and {run["job_type"] for run in runs} == {"train"}
    by_seed = {run["summary"]["seed"]: run["summary"] for run in runs}
    assert sorted(by_seed) == [1, 2]
    for record in records:  # the record's fields are the run's summary
        summary = by_seed[record["seed"]]
        assert summary["metrics/top1"] == record["metrics"]["top1"]
        assert summary["latency_ms/median"] == record["latency_ms"]["median"]
        assert (summary["flops"], summary["hardware"]) == (record["flops"], record["hardware"])


def test_a_typo_in_an_override_fails_before_any_work(tmp_path):
    proc = run_cli("train.py", "experiment=smoke", "trainer.max_epoch=1", f"paths.results={tmp_path}", check=False)
    assert proc.returncode != 0
    assert "Could not override 'trainer.max_epoch'" in proc.stderr
    assert not (tmp_path / "records.jsonl").exists() and not (tmp_path / "runs").exists()


def test_evaluate_without_a_checkpoint_fails_before_any_work(tmp_path):
    proc = run_cli("evaluate.py", "experiment=smoke", f"paths.results={tmp_path}", check=False)
    assert proc.returncode == 1 and "evaluate.py needs checkpoint=PATH" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "records.jsonl").exists()


def test_a_missing_required_value_is_named_before_any_work(tmp_path):
    proc = run_cli("train.py", "model.name=???", f"paths.results={tmp_path}", check=False)
    assert proc.returncode == 2 and "Missing mandatory value: model.name" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_killed_run_resumes_to_the_same_result(tmp_path, data_dir):
    common = [
        "experiment=smoke",
        "trainer.max_epochs=3",
        "logger=none",
        EAGER,
        f"paths.data={data_dir}",
        "dataset.datamodule.num_workers=2",  # worker processes too must see the same samples after a restart
        "model.drop_rate=0.5",  # and the model's own randomness must be the same
    ]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run_in_process("train.py", *common, f"paths.results={straight}")  # the reference: what the process is not about
    proc = run_cli(
        "train.py",
        *common,
        f"paths.results={killed}",
        "+callbacks.kill={_target_: tests.helpers.crash.KillAtEpochStart, epoch: 2}",
        check=False,
    )
    assert proc.returncode == 17 and not (killed / "records.jsonl").exists()
    resumed = run_cli("train.py", *common, f"paths.results={killed}", "resume=true")
    # it continued from the epoch-2 checkpoint (a from-scratch rerun with the same seed would also match)
    assert "Restored all states from the checkpoint" in resumed.stdout + resumed.stderr

    (a,), (b,) = read_jsonl(straight / "records.jsonl"), read_jsonl(killed / "records.jsonl")
    assert Path(a["checkpoint"]).name == Path(b["checkpoint"]).name
    weights_a = torch.load(a["checkpoint"], weights_only=True)["state_dict"]
    weights_b = torch.load(b["checkpoint"], weights_only=True)["state_dict"]
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert a["metrics"]["top1"] == b["metrics"]["top1"]


def test_compress_none_reuses_the_trained_baseline_and_records_both_sides(smoke_run, data_dir, tmp_path):
    results, _ = smoke_run
    trained = read_jsonl(results / "records.jsonl")[0]
    # The trained runs of smoke_run, its own records: the other tests that use smoke_run do not see this one.
    overrides = [f"paths.results={tmp_path}", f"paths.runs={results / 'runs'}", f"paths.data={data_dir}"]
    proc = run_cli("compress.py", "experiment=smoke", *overrides, "logger=none")
    assert "reusing the baseline trained with this config" in proc.stderr + proc.stdout
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    check_complete(record, paired=True)
    assert record["checkpoint"] == trained["checkpoint"] and record["baseline"]["checkpoint"] == trained["checkpoint"]
    # compressor=none deploys the baseline: one file, named by the trained weights, evaluated for both sides and
    # timed against itself (what the comparison's interval then shows is the protocol's own noise)
    paired = record["vs_baseline"]["latency"]
    assert paired["rounds"] == 5 and paired["ci95"][0] <= paired["ratio"] <= paired["ci95"][1]
    assert record["artifact"] == record["baseline"]["artifact"]
    assert Path(record["artifact"]).name == Path(trained["artifact"]).name
    assert record["baseline"]["metrics"] == record["metrics"] == trained["metrics"]
    assert record["baseline"]["size_bytes"] == record["size_bytes"]
    # What the compression cost, named for what it measures (its own values: tests/unit/test_cost_measure.py)
    assert {"time_s", "rss_added_peak_bytes", "cuda_added_peak_bytes"} <= set(record["compression"])
