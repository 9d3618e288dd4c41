"""compress.py recipe=NAME: stages chained (each given the previous stage's model), a record per stage with its
baseline and previous measurements, the waterfall, recovery from the previous stage, resume after SIGKILL, and the
chains refused before any work."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edgecomp.errors import ConfigError
from edgecomp.lit.hinton_distillation_module import HintonDistillationModule
from edgecomp.lit.training import Training
from edgecomp.models.checkpoint import load_state_dict
from edgecomp.pipelines import compress
from edgecomp.pipelines.recipe import STAGE_DONE
from edgecomp.pipelines.report import write_report
from edgecomp.report.waterfall import waterfall_table
from tests.conftest import REPO, compose_config, read_jsonl, recipe_stage_record, run_cli

# The benchmark paper's methods chained on the smoke classifier: prune 50 % (1 fine-tune epoch), KD recovery from
# the unpruned baseline (1 epoch), INT8.
SMOKE_CLASSIFIER_RECIPE = [
    "experiment=smoke",
    "recipe=prune_kd_int8",
    "recipe.stages.prune.epochs=1",
    "recipe.stages.recover.epochs=1",
    "recipe.stages.quantize.calib_images=16",
    "logger=none",
    "trainer.enable_progress_bar=false",
]
STAGES = ["prune", "recover", "quantize"]
# What a record of the same work may differ in between two runs: where its files are, when, and how fast.
UNREPEATABLE = {"artifact", "checkpoint", "created", "latency_ms", "export_time_s", "config"}


@pytest.fixture(scope="module")
def chained(tmp_path_factory, data_dir, one_torch_thread):
    """The smoke recipe run in-process, recording the state every fine-tune starts from."""
    results = tmp_path_factory.mktemp("recipe")
    cfg = compose_config("compress", [*SMOKE_CLASSIFIER_RECIPE, f"paths.results={results}", f"paths.data={data_dir}"])
    starts = []
    fine_tune = Training.fine_tune

    def recording_fine_tune(self, module, epochs, *callbacks):
        network = module.student if isinstance(module, HintonDistillationModule) else module.model
        starts.append((type(module).__name__, {k: v.clone() for k, v in network.state_dict().items()}))
        return fine_tune(self, module, epochs, *callbacks)

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(Training, "fine_tune", recording_fine_tune)
    try:
        records = compress.run(cfg)
    finally:
        monkeypatch.undo()
    return results, records, starts


def test_each_stage_is_recorded_against_the_original_and_the_stage_before(chained):
    results, returned, _ = chained
    records = read_jsonl(results / "records.jsonl")
    assert returned == records and len(records) == 3
    assert [r["recipe"]["stage"] for r in records] == STAGES and [r["recipe"]["index"] for r in records] == [0, 1, 2]
    assert all(r["recipe"]["name"] == "prune_kd_int8" and r["recipe"]["stages"] == STAGES for r in records)
    assert [r["compressor"] for r in records] == ["prune_unstructured", "kd", "ptq_int8"]
    # One original model for every stage; each stage's `previous` is what the stage before it measured.
    assert records[0]["baseline"] == records[1]["baseline"] == records[2]["baseline"] == records[0]["previous"]
    for before, after in zip(records, records[1:], strict=False):
        for key in ("metrics", "latency_ms", "size_bytes", "params", "flops", "runtime"):
            assert after["previous"][key] == before[key], key
    # Each stage timed against the original and the stage before in one paired timing: the stage's own passes are
    # its record's, and both ratios carry an interval and a verdict (the first stage's previous is the original).
    for record in records:
        latency = record["latency_ms"]
        assert latency["rounds"] == 5 and len(latency["passes_ms_per_image"]) == latency["runs"] == 10
        for paired in (record["vs_baseline"]["latency"], record["vs_baseline"]["latency_vs_previous"]):
            low, high = paired["ci95"]
            assert low <= paired["ratio"] <= high and paired["rounds"] == 5
            assert paired["verdict"] == ("faster" if high < 1 else "slower" if low > 1 else "same within noise")
    assert records[0]["vs_baseline"]["latency"] == records[0]["vs_baseline"]["latency_vs_previous"]
    assert records[1]["vs_baseline"]["latency"] != records[1]["vs_baseline"]["latency_vs_previous"]
    prune, recover, quantize = records
    assert prune["compression"]["sparsity_reached"] == pytest.approx(0.5, abs=0.01)
    assert recover["compression"]["student_start"] == "input"
    assert recover["compression"]["teacher_checkpoint"] == prune["baseline"]["checkpoint"]  # the unpruned baseline
    assert quantize["runtime"]["precision"] == "int8" and quantize["artifact"].endswith("int8.onnx")
    assert quantize["size_bytes"] <= 0.35 * recover["size_bytes"]


def test_the_waterfall_is_written_with_a_row_per_stage(chained):
    results, records, _ = chained
    (written,) = (results / "stages").rglob("prune_kd_int8-*-recipe.md")
    assert written.read_text() == waterfall_table(records)
    rows = [line for line in written.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| baseline", "| 1. prune", "| 2. recover", "| 3. quantize"]


def test_each_training_stage_starts_from_the_model_the_stage_before_made(chained):
    results, records, starts = chained
    # The baseline's training, the masked fine-tune, the distillation: in that order.
    assert [name for name, _ in starts][-2:] == ["ClassificationModule", "HintonDistillationModule"]
    (_, pruning_start), (_, student_start) = starts[-2:]
    baseline = load_state_dict(records[0]["baseline"]["checkpoint"])
    pruned = load_state_dict(records[0]["checkpoint"])  # what the prune stage saved
    # pruning's fine-tune starts from the trained baseline, masked (the original weights kept beside the mask)
    assert torch.equal(pruning_start["conv_stem.weight_orig"], baseline["conv_stem.weight"])
    assert 0 < float(pruning_start["conv_stem.weight_mask"].mean()) < 1
    assert student_start.keys() == pruned.keys()
    assert all(torch.equal(student_start[key], pruned[key]) for key in pruned)
    assert not all(torch.equal(student_start[key], baseline[key]) for key in baseline)  # not the baseline's


def test_a_recipe_sharing_the_stages_reuses_their_work_and_records_them_as_its_own(chained, data_dir, monkeypatch):
    results, first, _ = chained

    def no_training(*args, **kwargs):
        raise AssertionError("a finished stage was trained again")

    monkeypatch.setattr(Training, "fine_tune", no_training)
    again = compose_config(
        "compress",
        [*SMOKE_CLASSIFIER_RECIPE, "recipe.name=again", f"paths.results={results}", f"paths.data={data_dir}"],
    )
    records = compress.run(again)
    assert read_jsonl(results / "records.jsonl") == [*first, *records]  # appended as the second recipe's
    assert [r["recipe"]["name"] for r in records] == ["again"] * 3
    for mine, theirs in zip(records, first, strict=True):
        assert mine["recipe"]["key"] == theirs["recipe"]["key"] and mine["metrics"] == theirs["metrics"]
    # Run again: nothing new to record.
    compress.run(again)
    assert len(read_jsonl(results / "records.jsonl")) == 6
    # The report writes each recipe's waterfall.
    report = write_report(results)
    assert [w.splitlines()[0].split(":")[0] for w in report.waterfalls] == ["recipe=again", "recipe=prune_kd_int8"]
    # and sets the two against each other: every stage is the same run, shared, not a difference of zero
    (contrast,) = report.contrasts
    assert contrast.splitlines()[0].startswith("recipe=again - recipe=prune_kd_int8")
    stage_rows = [line for line in contrast.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(stage_rows) == 3 and all(line.endswith("| the same run |") for line in stage_rows)
    assert (results / "report" / "recipes.md").read_text() == "\n".join(report.waterfalls + report.contrasts)


def test_through_the_command_line_the_recovery_stage_starts_from_the_pruned_weights(tmp_path, data_dir):
    """The CLI run with the distillation's learning rate ~0: what the recovery stage saves is then the weights it
    started from, which must be the prune stage's, not a fresh initialisation."""
    proc = _compress_process(tmp_path, data_dir, "recipe.stages.recover.lr=1e-12", "~recipe.stages.quantize")
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    prune, recover = read_jsonl(tmp_path / "records.jsonl")
    pruned, recovered = load_state_dict(prune["checkpoint"]), load_state_dict(recover["checkpoint"])
    weights = [key for key in pruned if key.endswith("weight") and pruned[key].dim() == 4]  # the convolutions
    assert weights and all(torch.allclose(recovered[key], pruned[key], atol=1e-6) for key in weights)
    # the weights it started from are the pruned ones: half of them zero, which no initialisation has
    assert sum(int((pruned[key] == 0).sum()) for key in weights) >= 0.45 * sum(pruned[key].numel() for key in weights)
    assert recover["compression"]["student_start"] == "input"


def test_the_chain_table_gives_deltas_the_records_imply():
    def measured(top1, latency, size):
        return {"metrics": {"top1": top1}, "latency_ms": {"median": latency}, "size_bytes": size, "params": 10,
                "flops": 100, "runtime": {"runtime": "onnxruntime", "precision": "fp32"}}  # fmt: skip

    base, first, second = measured(0.80, 4.0, 1000), measured(0.70, 2.0, 1000), measured(0.75, 1.0, 250)
    records = [
        recipe_stage_record(name, index, stage, previous, base)
        for index, (name, stage, previous) in enumerate([("a", first, base), ("b", second, first)])
    ]
    rows = [line.split(" | ") for line in waterfall_table(records).splitlines() if line.startswith("| 2. b")]
    (row,) = rows
    # top1 75 %, +5 points on the stage before, -5 on the original; 2x faster than the stage before, 4x than the
    # original; a quarter of the original's size.
    assert row[3:6] == ["75.00", "+5.00", "-5.00"]
    assert row[7:9] == ["2.00x", "4.00x"] and row[10] == "0.25x"
    # Two seeds (the second 10 points higher at stage b): mean +- sample std and the t interval (half width
    # 12.71 * 7.07 / sqrt(2) = 63.53) per cell; the change to the stage before paired by seed (+5 and +15 points), its
    # interval and verdict.
    other = [{**r, "seed": 1} for r in records]
    other[1] = {**other[1], "metrics": {"top1": 0.85}}
    (row,) = [line.split(" | ") for line in waterfall_table([*records, *other]).splitlines() if "| 2. b" in line]
    assert row[3] == "80.00 ± 7.07 [16.47, 143.53]" and row[4] == "+10.00 [-53.53, +73.53] same within noise"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["+recipe.stages.again=${recipe.stages.prune}"],
            r"stage 3 'again' .* comes after stage 'quantize' .* put quantization last",
        ),
        (["compressor=kd"], r"recipe=prune_kd_int8 and compressor=kd"),
        (["recipe.stages.recover.T=0"], r"recipe=prune_kd_int8, stage 'recover': compressor.T=0: expected"),
    ],
)
def test_an_impossible_chain_is_refused_before_any_work(tmp_path, overrides, message):
    cfg = compose_config("compress", [*SMOKE_CLASSIFIER_RECIPE, f"paths.results={tmp_path}", *overrides])
    with pytest.raises(ConfigError, match=message):
        compress.run(cfg)
    assert not list(tmp_path.iterdir())  # nothing trained, generated or written


def test_the_command_line_refuses_a_stage_after_quantization_with_a_one_line_error(tmp_path):
    proc = run_cli(
        "compress.py",
        *SMOKE_CLASSIFIER_RECIPE,
        "+recipe.stages.again=${recipe.stages.prune}",
        f"paths.results={tmp_path}",
        check=False,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "stage 3 'again' (compressor=prune_unstructured): comes after stage 'quantize'" in proc.stderr
    assert {path.name for path in tmp_path.iterdir()} <= {"hydra"}  # Hydra's own log folder; no data, run, record


def test_a_baseline_teacher_at_another_resolution_is_refused(tmp_path):
    cfg = compose_config(
        "compress",
        ["experiment=smoke_recipe", "recipe.stages.recover.teacher_scale=2", f"paths.results={tmp_path}"],
    )
    with pytest.raises(ConfigError, match=r"stage 1 'recover' .* teacher is the unpruned baseline .*teacher_scale=2"):
        compress.run(cfg)
    assert not list(tmp_path.iterdir())


def _compress_process(results: Path, data_dir: Path, *overrides: str) -> subprocess.Popen:
    command = [sys.executable, "compress.py", *SMOKE_CLASSIFIER_RECIPE, f"paths.results={results}",
               f"paths.data={data_dir}", *overrides]  # fmt: skip
    # one thread, as the module's in-process run (one_torch_thread) that the kill/resume test compares with
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


def test_a_recipe_killed_mid_stage_resumes_there_and_records_what_an_uninterrupted_run_does(
    chained, tmp_path, data_dir
):
    _, whole, _ = chained  # the same recipe run uninterrupted (in-process, one thread, as this worker's runs)
    killed = _compress_process(tmp_path / "killed", data_dir)
    deadline = time.monotonic() + 600
    # Killed once the first stage has finished, while the distillation stage runs.
    while not list((tmp_path / "killed").rglob(f"0-prune-*/{STAGE_DONE}")):
        assert killed.poll() is None and time.monotonic() < deadline, killed.communicate()[0][-3000:]
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not list((tmp_path / "killed").rglob(f"1-recover-*/{STAGE_DONE}"))  # it died inside the second stage
    first_stage = read_jsonl(tmp_path / "killed" / "records.jsonl")

    resumed = _compress_process(tmp_path / "killed", data_dir)
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
