"""compress.py recipe=NAME in-process: stages chained (each given the previous stage's model), a record per stage with
its baseline and previous measurements, the waterfall, recovery from the previous stage, and the chains refused before
any work (tests/e2e/test_recipe_resume.py: resume after SIGKILL; tests/unit/test_recipe_table.py: the table)."""

import shutil

import pytest
import torch

from edgecomp.errors import ConfigError
from edgecomp.lit.training import Training
from edgecomp.models.checkpoint import load_state_dict
from edgecomp.pipelines import compress
from edgecomp.pipelines.recipe import check_recipe
from edgecomp.pipelines.report import write_report
from edgecomp.report.waterfall import waterfall_table
from tests.conftest import compose_config, read_jsonl, run_in_process
from tests.helpers.recipe import SMOKE_CLASSIFIER_RECIPE, STAGES


@pytest.fixture(scope="module")
def chained(smoke_recipe):
    """The smoke recipe run in-process (once per session: the smoke_recipe fixture), recording the state every
    fine-tune starts from: (its results, what it returned, those states)."""
    return smoke_recipe.results, smoke_recipe.returned, smoke_recipe.starts


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


def test_a_recipe_sharing_the_stages_reuses_their_work_and_records_them_as_its_own(chained, smoke_recipe, monkeypatch):
    results, first, _ = chained

    def no_training(*args, **kwargs):
        raise AssertionError("a finished stage was trained again")

    monkeypatch.setattr(Training, "fine_tune", no_training)
    again = compose_config("compress", [*smoke_recipe.overrides, "recipe.name=again"])
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


def test_through_the_command_line_the_recovery_stage_starts_from_the_pruned_weights(
    tmp_path, data_dir, trained, smoke_recipe
):
    """The command line with the distillation's learning rate ~0: what the recovery stage saves is then the weights
    it started from, which must be the prune stage's, not a fresh initialisation."""
    # The session's smoke recipe's finished stages: its prune stage (and the baseline's measurement) is this recipe's
    # too, and is reused as a resumed run reuses it; the recovery stage, at another lr, is this run's own.
    shutil.copytree(smoke_recipe.results / "stages", tmp_path / "stages")
    run_in_process(
        "compress.py",
        *SMOKE_CLASSIFIER_RECIPE,
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
        f"paths.runs={trained('smoke').runs}",  # the session's smoke baseline
        "recipe.stages.recover.lr=1e-12",
        "~recipe.stages.quantize",
    )
    prune, recover = read_jsonl(tmp_path / "records.jsonl")
    pruned, recovered = load_state_dict(prune["checkpoint"]), load_state_dict(recover["checkpoint"])
    weights = [key for key in pruned if key.endswith("weight") and pruned[key].dim() == 4]  # the convolutions
    assert weights and all(torch.allclose(recovered[key], pruned[key], atol=1e-6) for key in weights)
    # the weights it started from are the pruned ones: half of them zero, which no initialisation has
    assert sum(int((pruned[key] == 0).sum()) for key in weights) >= 0.45 * sum(pruned[key].numel() for key in weights)
    assert recover["compression"]["student_start"] == "input"


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
    proc = run_in_process(
        "compress.py",
        *SMOKE_CLASSIFIER_RECIPE,
        "+recipe.stages.again=${recipe.stages.prune}",
        f"paths.results={tmp_path}",
        check=False,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "stage 3 'again' (compressor=prune_unstructured): comes after stage 'quantize'" in proc.stderr
    assert {path.name for path in tmp_path.iterdir()} <= {"hydra"}  # Hydra's own log folder; no data, run, record


@pytest.mark.parametrize(
    "override",
    ["recipe.stages.recover.teacher_scale=2", "recipe=prune_distill2x_int8"],  # the 2x recipe needs a `teacher`
)
def test_a_baseline_teacher_at_another_resolution_is_refused(tmp_path, override):
    cfg = compose_config("compress", ["experiment=smoke_recipe", override, f"paths.results={tmp_path}"])
    with pytest.raises(ConfigError, match=r"stage 1 'recover' .* teacher is the unpruned baseline .*teacher_scale=2"):
        compress.run(cfg)
    assert not list(tmp_path.iterdir())


def test_the_2x_recipe_given_a_teacher_distils_from_its_native_pixels_at_twice_the_resolution():
    cfg = compose_config("compress", ["experiment=smoke_recipe", "recipe=prune_distill2x_int8", "teacher=yolov8n"])
    stages = {stage.name: stage.compressor for stage in check_recipe(cfg)}
    assert list(stages) == ["prune", "recover", "quantize"]
    assert stages["recover"].options.teacher_scale == 2 and stages["recover"].options.teacher_input == "native"
