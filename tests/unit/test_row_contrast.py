"""The report's compressed rows against each other (edgecomp.report.row_contrast, report/contrasts.md): a study's arms
on one detector, three seeds, each seed's arms from that seed's trained baseline; per pair A - B the per-seed
differences of map and map_small, their mean, t interval and verdict, worked out by hand here from Student's t."""

import math

import pytest

from edgecomp.evaluate.record import append_record
from edgecomp.pipelines import report as report_pipeline
from edgecomp.pipelines.report import CONTRASTS_MD, PARETO_PNG, RECIPES_MD, TABLE_CSV, TABLE_MD, write_report
from edgecomp.report.row_contrast import row_contrasts
from tests.conftest import compose_config
from tests.helpers.records import ORT_FP32, make_record, sweep_records

# Student's t quantile 0.975 by degrees of freedom (seeds - 1).
T = {1: 12.7062047, 2: 4.302653}
MODEL = "yolov8n"
# Each seed's trained baseline (map, map_small): far apart, the spread that pairing by seed takes out.
BASELINE = {0: (0.300, 0.100), 1: (0.350, 0.120), 2: (0.400, 0.140)}
# Each arm's change to its own baseline in points, (map, map_small) per seed 0, 1, 2.
CHANGES = {
    "finetune": ((0.5, 0.5), (0.6, 0.6), (0.4, 0.7)),
    "fitnet": ((1.0, 0.1), (1.2, 0.3), (1.1, 0.2)),
    "scalekd": ((2.0, 1.0), (2.5, 1.5), (2.3, 1.2)),
}
TITLE = (
    "compressors against each other (A - B): yolov8n on synthetic_sod, device=cpu, runtime onnxruntime fp32, "
    "seeds 0, 1, 2 (per-seed differences from the same baseline: mean [95 % interval] verdict)"
)


def checkpoint(seed):
    return f"results/runs/{MODEL}-s{seed}/checkpoints/last.ckpt"


def detector(compressor, seed, map_, map_small, **extra):
    record = make_record(MODEL, compressor, seed, map_, 30.0, 6_000_000, 5_500_000, task="detection", metric="map")
    record["metrics"]["map_small"] = map_small
    record.update(extra)
    return record


def arm(compressor, seed, baseline_checkpoint=None, baseline=None):
    """`compressor`'s record of `seed`: CHANGES[compressor][seed] points off the baseline it started from
    (BASELINE[seed] at checkpoint(seed) unless given)."""
    base_map, base_small = baseline or BASELINE[seed]
    change_map, change_small = CHANGES[compressor][seed]
    return detector(
        compressor,
        seed,
        base_map + change_map / 100,
        base_small + change_small / 100,
        settings={"epochs": 8},
        compression={"time_s": 60.0},
        baseline={
            "artifact": f"results/runs/{MODEL}-s{seed}/fp32.onnx",
            "checkpoint": baseline_checkpoint or checkpoint(seed),
            "metrics": {"map": base_map, "map_small": base_small},
            "latency_ms": {"median": 30.0},
            "size_bytes": 6_000_000,
            "gzip_bytes": 5_500_000,
            "runtime": ORT_FP32,
        },
    )


def study():
    """The trained baselines, compress.py's compressor=none records (the baseline deployed as it is), three arms
    over seeds 0-2 (scalekd's seed 2 from a baseline trained again: another checkpoint), and a recipe's stage
    records on the same model, data, device and runtime."""
    records = [detector("none", seed, *BASELINE[seed]) for seed in BASELINE]
    for seed in BASELINE:
        itself = detector("none", seed, *BASELINE[seed], compression={"time_s": 0.0})
        itself["baseline"] = {**itself, "checkpoint": checkpoint(seed)}
        records.append(itself)
    for compressor in ("scalekd", "fitnet", "finetune"):  # not in the table's order: the contrasts are
        for seed in BASELINE:
            if (compressor, seed) == ("scalekd", 2):
                records.append(arm(compressor, seed, "results/runs/retrained-s2/last.ckpt", (0.450, 0.200)))
            else:
                records.append(arm(compressor, seed))
    for seed in BASELINE:
        for index, stage in enumerate(("finetune", "scalekd")):
            stage_record = arm(stage, seed)
            stage_record["recipe"] = {"name": "r", "stage": stage, "index": index, "stages": ["finetune", "scalekd"]}
            stage_record["metrics"]["map"] += 0.05  # 5 points off: a line of theirs would show
            records.append(stage_record)
    return records


def t_text(differences):
    """`mean [low, high] verdict` of the per-seed differences, by hand."""
    n = len(differences)
    mean = sum(differences) / n
    std = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    half = T[n - 1] * std / math.sqrt(n)
    low, high = mean - half, mean + half
    verdict = "better" if low > 0 else "worse" if high < 0 else "same within noise"
    return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}] {verdict}"


def differences(first, second, metric, seeds=(0, 1, 2)):
    column = {"map": 0, "map_small": 1}[metric]
    return [CHANGES[first][seed][column] - CHANGES[second][seed][column] for seed in seeds]


def cells(table):
    """{(A, B): [Δ map, Δ map_small]} of a contrast table, in its order."""
    lines = [line for line in table.splitlines() if line.startswith("|")]
    assert lines[0] == "| A | B | Δ map (pts) | Δ map_small (pts) |" and lines[1] == "|---|---|---:|---:|"
    split = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    return {(a, b): rest for a, b, *rest in split}


def test_each_pair_of_arms_once_in_the_tables_order_with_its_paired_t_interval_and_verdict():
    (table,) = row_contrasts(study())
    assert table.splitlines()[0] == TITLE
    contrasts = cells(table)
    assert list(contrasts) == [("finetune", "fitnet"), ("finetune", "scalekd"), ("fitnet", "scalekd")]
    # over all three seeds: -0.60 [-0.85, -0.35] worse in map, +0.40 [+0.15, +0.65] better in map_small
    assert contrasts[("finetune", "fitnet")] == [
        t_text(differences("finetune", "fitnet", "map")),
        t_text(differences("finetune", "fitnet", "map_small")),
    ]
    assert contrasts[("finetune", "fitnet")] == ["-0.60 [-0.85, -0.35] worse", "+0.40 [+0.15, +0.65] better"]


def test_a_seed_whose_two_records_started_from_different_baselines_is_left_out_and_the_cell_says_so():
    contrasts = cells(row_contrasts(study())[0])
    # scalekd's seed 2 started from another checkpoint: its pairs are over seeds 0 and 1 (t with 1 degree of freedom)
    for first in ("finetune", "fitnet"):
        assert contrasts[(first, "scalekd")] == [
            f"{t_text(differences(first, 'scalekd', metric, seeds=(0, 1)))} (2 of 3 seeds)"
            for metric in ("map", "map_small")
        ]
    assert contrasts[("finetune", "scalekd")][0] == "-1.70 [-4.24, +0.84] same within noise (2 of 3 seeds)"


def test_recipe_stages_and_the_deployed_baseline_are_no_compressed_rows():
    records = study()
    (table,) = row_contrasts(records)
    assert not any(label in ("none", "r") or label.startswith("r ") for pair in cells(table) for label in pair)
    # the recipe's stages alone, with the baselines and compressor=none: nothing to contrast
    others = [record for record in records if record.get("recipe") or record["compressor"] == "none"]
    assert row_contrasts(others) == []
    # one arm beside them: one compressed row, no table
    assert row_contrasts([r for r in records if r.get("recipe") or r["compressor"] in ("none", "fitnet")]) == []


def test_rows_of_another_runtime_model_or_unknown_baseline_are_not_paired():
    records = [arm("finetune", seed) for seed in BASELINE]
    int8 = [{**arm("fitnet", seed), "runtime": {**ORT_FP32, "precision": "int8"}} for seed in BASELINE]
    other_model = [{**arm("fitnet", seed), "model": "yolov8s"} for seed in BASELINE]
    assert row_contrasts(records + int8 + other_model) == []
    # records without their baseline's checkpoint (older ones) cannot show they started from the same model
    unknown = [arm(compressor, seed) for compressor in ("finetune", "fitnet") for seed in BASELINE]
    for record in unknown:
        del record["baseline"]["checkpoint"]
    assert row_contrasts(unknown) == []
    assert row_contrasts(sweep_records()) == []  # the table's sweep: two prunings, neither baseline named


def test_one_seed_has_no_interval_and_the_title_says_so():
    (table,) = row_contrasts([arm(compressor, 1) for compressor in CHANGES])
    assert table.splitlines()[0].endswith("seed 1 (one seed: no interval over seeds)")
    assert cells(table)[("finetune", "fitnet")] == ["-0.60", "+0.30"] and "[" not in table


def test_write_report_writes_contrasts_md_only_when_there_is_a_table(tmp_path, capsys):
    study_folder, alone = tmp_path / "study", tmp_path / "alone"
    for record in study():
        append_record(study_folder / "records.jsonl", record)
        if record["compressor"] in ("none", "finetune") and not record.get("recipe"):
            append_record(alone / "records.jsonl", record)  # one arm and its baselines: nothing to contrast
    report = write_report(study_folder)
    (table,) = report.row_contrasts
    assert (study_folder / "report" / CONTRASTS_MD).read_text() == table
    names = {path.name for path in (study_folder / "report").iterdir()}
    assert names == {TABLE_MD, TABLE_CSV, PARETO_PNG, CONTRASTS_MD, RECIPES_MD}

    lonely = write_report(alone)
    assert lonely.row_contrasts == [] and not (alone / "report" / CONTRASTS_MD).exists()

    # evaluate.py report=DIR prints them after the table and names the file among those written
    capsys.readouterr()
    report_pipeline.run(compose_config("evaluate", [f"report={study_folder}", "logger=none"]))
    printed = capsys.readouterr().out
    assert printed.index(report.markdown) < printed.index(TITLE) < printed.index("recipe=r")
    assert str(study_folder / "report" / CONTRASTS_MD) in printed.splitlines()[-1]


@pytest.mark.parametrize("seeds", [(0, 1, 2), (2, 0, 1)])
def test_the_order_records_come_in_does_not_change_the_table(seeds):
    by_seed = {seed: [r for r in study() if r["seed"] == seed] for seed in seeds}
    shuffled = [record for seed in seeds for record in reversed(by_seed[seed])]
    assert row_contrasts(shuffled) == row_contrasts(study())
