"""The report's intervals and verdicts over seeds (issue 33): the table's paired accuracy change and speed-up, a row
of one seed, the recipes' waterfall, and the Pareto plot's error bars. Records built here with known numbers; every
expected interval is worked out by hand from Student's t (the critical values below), not by the report's code."""

import csv
import io
import math
import statistics

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer
from PIL import Image

from edgecomp.evaluate.record import append_record
from edgecomp.pipelines.report import write_report
from edgecomp.report.pareto import pareto_figure
from edgecomp.report.table import build_rows
from edgecomp.report.table_format import to_csv, to_markdown
from edgecomp.report.waterfall import waterfall_table
from tests.helpers.records import ORT_FP32, ORT_INT8, make_record, markdown_row, recipe_stage_record

# Student's t quantile 0.975 by degrees of freedom (seeds - 1).
T = {1: 12.7062047, 2: 4.30265273}
MODEL = "resnet18"
# The seeds' baselines far apart (5 points, 1 ms): the spread that pairing by seed takes out of the changes.
BASELINE_TOP1 = (0.70, 0.75, 0.80)
BASELINE_MS = (10.0, 11.0, 12.0)


def t_interval(values):
    """Mean and the 95 % t interval, by hand."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = T[n - 1] * std / math.sqrt(n)
    return mean, (mean - half, mean + half)


def compressed(seed, top1_change_pts, latency_ratio=0.5, paired=None, **extra):
    """A ptq_int8 record of `seed`: its baseline (measured in the same run) BASELINE_*[seed], its top-1
    `top1_change_pts` points off that, its median latency `latency_ratio` times the baseline's, and where given
    the paired-rounds ratio `paired` ({ratio, ci95, rounds, verdict}) in vs_baseline.latency."""
    top1, ms = BASELINE_TOP1[seed], BASELINE_MS[seed]
    record = make_record(
        MODEL,
        "ptq_int8",
        seed,
        top1 + top1_change_pts / 100,
        ms * latency_ratio,
        1_500_000,
        1_400_000,
        runtime=ORT_INT8,
        compression={"time_s": 2.0},
        baseline={
            "metrics": {"top1": top1},
            "latency_ms": {"median": ms},
            "size_bytes": 6_000_000,
            "gzip_bytes": 5_500_000,
            "runtime": ORT_FP32,
        },
        **extra,
    )
    record["vs_baseline"] = {"latency_ratio": latency_ratio}  # what a record older than the paired rounds has
    if paired is not None:
        record["vs_baseline"]["latency"] = paired
    return record


def compressed_row(records):
    (row,) = [row for row in build_rows(records) if not row.is_baseline]
    return row


def test_differences_that_agree_across_seeds_read_better_though_the_seeds_spread():
    records = [compressed(seed, change) for seed, change in enumerate([0.9, 1.0, 1.1])]
    row = compressed_row(records)
    mean, (low, high) = t_interval([0.9, 1.0, 1.1])  # 1.00 [0.75, 1.25]
    assert row.accuracy_change.n == 3 and row.accuracy_change.verdict == "better"
    assert row.delta_accuracy_pts == pytest.approx(mean) and row.accuracy_change.ci95 == pytest.approx((low, high))
    # The accuracies themselves spread 5 points over the seeds: unpaired, the gain would be lost in it.
    assert row.accuracy_pct.std == pytest.approx(5.1) and row.accuracy_pct.ci95[1] - row.accuracy_pct.ci95[0] > 20
    cells = markdown_row(to_markdown(build_rows(records)), MODEL, "ptq_int8")
    assert cells["Δ acc (pts)"] == "+1.00 [+0.75, +1.25] better"
    assert cells["n"] == "3"
    mean, (low, high) = t_interval([70.9, 76.0, 81.1])
    assert cells["accuracy (%)"] == f"{mean:.2f} ± 5.10 [{low:.2f}, {high:.2f}]" == "76.00 ± 5.10 [63.33, 88.67]"


def test_differences_that_disagree_across_seeds_read_same_within_noise():
    records = [compressed(seed, change) for seed, change in enumerate([-2.0, 0.5, 4.0])]
    row = compressed_row(records)
    mean, (low, high) = t_interval([-2.0, 0.5, 4.0])  # 0.83 [-6.65, 8.32]
    assert row.accuracy_change.verdict == "same within noise"
    assert row.accuracy_change.ci95 == pytest.approx((low, high)) and low < 0 < high
    cells = markdown_row(to_markdown(build_rows(records)), MODEL, "ptq_int8")
    assert cells["Δ acc (pts)"] == "+0.83 [-6.65, +8.32] same within noise"
    # The same seeds all losing: worse.
    worse = compressed_row([compressed(seed, change) for seed, change in enumerate([-1.2, -0.8, -1.0])])
    assert worse.accuracy_change.verdict == "worse" and worse.accuracy_change.ci95[1] < 0


def test_a_row_of_one_seed_prints_no_interval_and_says_one_seed():
    record = compressed(0, -1.5)
    del record["vs_baseline"]  # nor any paired latency rounds
    markdown = to_markdown(build_rows([record]))
    cells = markdown_row(markdown, MODEL, "ptq_int8")
    assert cells["n"] == "1"
    assert cells["accuracy (%)"] == "68.50 (1 seed)"
    assert cells["Δ acc (pts)"] == "-1.50 (1 seed)"
    assert cells["latency (ms, median)"] == "5.00 (1 seed)"
    assert cells["speed-up (base/comp)"] == "2.00x (1 seed)"  # 10 ms / 5 ms, the medians' ratio
    line = next(line for line in markdown.splitlines() if "ptq_int8" in line)
    assert "[" not in line and "±" not in line and "better" not in line and "worse" not in line
    row = compressed_row([record])
    assert row.accuracy_pct.ci95 is None and row.accuracy_change.ci95 is None and row.accuracy_change.n == 1
    assert row.speedup_interval.ci95 is None and row.speedup_interval.verdict is None
    csv_line = dict(zip(*[line.split(",") for line in to_csv([row]).splitlines()], strict=True))
    assert csv_line["accuracy_pct_ci95_low"] == csv_line["delta_accuracy_pts_ci95_low"] == ""
    assert csv_line["speedup_ci95_low"] == csv_line["speedup_verdict"] == ""
    assert csv_line["delta_accuracy_verdict"] == "one seed"


def test_a_row_of_one_seed_shows_the_intervals_its_run_measured_marked_as_such():
    record = compressed(
        0,
        -1.5,
        paired={"ratio": 0.5, "ci95": [0.45, 0.55], "rounds": 9, "verdict": "faster"},
        metrics_ci95={"top1": [0.671, 0.699]},
        latency_ms={"median": 5.0, "mean": 5.2, "ci95": [4.8, 5.6]},
    )
    cells = markdown_row(to_markdown(build_rows([record])), MODEL, "ptq_int8")
    assert cells["accuracy (%)"] == "68.50 (1 seed; images [67.10, 69.90])"
    assert cells["latency (ms, median)"] == "5.00 (1 seed; passes [4.80, 5.60])"
    # 1 / 0.55 = 1.82, 1 / 0.45 = 2.22: the record's own paired rounds, and still no interval over seeds
    assert cells["speed-up (base/comp)"] == "2.00x [1.82x, 2.22x] faster (1 seed, 9 rounds)"
    assert cells["Δ acc (pts)"] == "-1.50 (1 seed)"
    row = compressed_row([record])
    assert row.accuracy_ci95 == pytest.approx((67.1, 69.9)) and row.latency_ci95 == pytest.approx((4.8, 5.6))
    # Two seeds: the interval over the seeds replaces the runs' own.
    two = compressed_row([record, compressed(1, -0.5, metrics_ci95={"top1": [0.73, 0.76]})])
    assert two.accuracy_images_ci95 is None and two.latency_passes_ci95 is None
    assert two.accuracy_ci95 == pytest.approx(t_interval([68.5, 74.5])[1])


def test_the_speed_up_is_from_the_paired_rounds_over_the_seeds():
    # The medians say no change (ratio 1 in every seed); the paired rounds of each run say about twice as fast.
    paired = [0.50, 0.52, 0.48]
    records = [
        compressed(seed, 0.0, latency_ratio=1.0, paired={"ratio": r, "ci95": [r - 0.2, r + 0.2], "rounds": 5})
        for seed, r in enumerate(paired)
    ]
    row = compressed_row(records)
    log_mean, (log_low, log_high) = t_interval([math.log(r) for r in paired])
    assert row.speedup == pytest.approx(math.exp(-log_mean))
    assert row.speedup_interval.ci95 == pytest.approx((math.exp(-log_high), math.exp(-log_low)))
    assert row.speedup_interval.verdict == "faster" and row.speedup_interval.n == 3
    cells = markdown_row(to_markdown(build_rows(records)), MODEL, "ptq_int8")
    assert cells["speed-up (base/comp)"] == "2.00x [1.81x, 2.21x] faster"
    # Seeds that disagree on the direction: same within noise; all slower: slower.
    mixed = compressed_row([compressed(s, 0.0, paired={"ratio": r}) for s, r in enumerate([0.9, 1.1, 1.0])])
    assert mixed.speedup_interval.verdict == "same within noise"
    assert mixed.speedup_interval.ci95[0] < 1 < mixed.speedup_interval.ci95[1]
    slower = compressed_row([compressed(s, 0.0, paired={"ratio": r}) for s, r in enumerate([1.3, 1.25, 1.35])])
    assert slower.speedup_interval.verdict == "slower" and slower.speedup_interval.ci95[1] < 1
    # One seed: the verdict of that run's own rounds.
    (one,) = [compressed(0, 0.0, paired={"ratio": 1.2, "ci95": [1.1, 1.3], "rounds": 9, "verdict": "slower"})]
    cells = markdown_row(to_markdown(build_rows([one])), MODEL, "ptq_int8")
    assert cells["speed-up (base/comp)"] == "0.83x [0.77x, 0.91x] slower (1 seed, 9 rounds)"


# A detector distilled by ScaleKD against the student alone (its baseline, measured in the same run), per seed:
# (map, map_small) of the student and of the distilled student. map_small's paired changes: 2.5, 3.0, 2.0 points.
STUDENT = {0: (0.300, 0.100), 1: (0.320, 0.120), 2: (0.310, 0.110)}
DISTILLED = {0: (0.330, 0.125), 1: (0.345, 0.150), 2: (0.338, 0.130)}
DETECTOR = "yolov8n"


AS_TABLED, ABSENT = object(), object()


def distilled(seed, map_small=AS_TABLED, student_map_small=AS_TABLED, **extra):
    """The scalekd record of `seed`, its map_small and its student's from DISTILLED / STUDENT unless given (a value,
    None, NaN, or ABSENT: the key left out, as in a record older than map_small)."""
    (student_map, student_small), (map_, small) = STUDENT[seed], DISTILLED[seed]
    small = small if map_small is AS_TABLED else map_small
    student_small = student_small if student_map_small is AS_TABLED else student_map_small
    record = make_record(
        DETECTOR,
        "scalekd",
        seed,
        map_,
        30.0,
        12_000_000,
        11_000_000,
        task="detection",
        metric="map",
        compression={"time_s": 100.0},
        baseline={
            "metrics": {"map": student_map, "map_small": student_small},
            "latency_ms": {"median": 30.0},
            "size_bytes": 12_000_000,
            "gzip_bytes": 11_000_000,
            "runtime": ORT_FP32,
        },
        **extra,
    )
    record["metrics"]["map_small"] = small
    for metrics in (record["metrics"], record["baseline"]["metrics"]):
        if metrics["map_small"] is ABSENT:
            del metrics["map_small"]
    return record


def csv_lines(rows):
    return list(csv.DictReader(io.StringIO(to_csv(rows))))


def test_a_detection_row_reports_map_small_like_its_accuracy_paired_by_seed():
    records = [distilled(seed) for seed in range(3)]
    rows = build_rows(records)
    student, kd = rows  # the student alone (the records' baselines) first
    assert (student.key.compressor, kd.key.compressor) == ("none", "scalekd")
    # map stays the accuracy: the Pareto plot's and the `accuracy` columns' metric
    assert kd.metric == "map" and [summary.metric for summary in kd.metrics] == ["map", "map_small"]
    assert kd.delta_accuracy_pts == pytest.approx(statistics.fmean([3.0, 2.5, 2.8]))

    small = kd.metric_summary("map_small")
    mean, (low, high) = t_interval([12.5, 15.0, 13.0])  # 13.50 [10.21, 16.79]
    assert small.pct.n == 3 and small.pct.mean == pytest.approx(mean)
    assert small.pct.std == pytest.approx(math.sqrt(1.75)) and small.pct.ci95 == pytest.approx((low, high))
    change, (change_low, change_high) = t_interval([2.5, 3.0, 2.0])  # +2.50 [+1.26, +3.74]: above 0
    assert small.change.n == 3 and small.delta_pts == pytest.approx(change) == pytest.approx(2.5)
    assert small.change.ci95 == pytest.approx((change_low, change_high)) and small.change.verdict == "better"
    student_small = student.metric_summary("map_small")
    assert student_small.pct.mean == pytest.approx(11.0) and student_small.change is None

    markdown = to_markdown(rows)
    cells = markdown_row(markdown, DETECTOR, "scalekd")
    assert cells["map_small (%)"] == f"{mean:.2f} ± 1.32 [{low:.2f}, {high:.2f}]" == "13.50 ± 1.32 [10.21, 16.79]"
    assert cells["Δ map_small (pts)"] == "+2.50 [+1.26, +3.74] better"
    assert markdown_row(markdown, DETECTOR, "none")["map_small (%)"] == "11.00 ± 1.00 [8.52, 13.48]"
    assert markdown_row(markdown, DETECTOR, "none")["Δ map_small (pts)"] == ""
    # its columns follow the accuracy's
    header = next(line for line in markdown.splitlines() if line.startswith("| model"))
    names = [name.strip() for name in header.strip("|").split("|")]
    position = names.index("Δ acc (pts)")
    assert names[position + 1 : position + 3] == ["map_small (%)", "Δ map_small (pts)"]

    _, line = csv_lines(rows)
    assert (line["map_small_n"], line["delta_map_small_n"], line["delta_map_small_verdict"]) == ("3", "3", "better")
    assert float(line["map_small_pct_mean"]) == pytest.approx(mean)
    assert float(line["map_small_pct_std"]) == pytest.approx(math.sqrt(1.75))
    assert (float(line["map_small_pct_ci95_low"]), float(line["map_small_pct_ci95_high"])) == pytest.approx((low, high))
    assert float(line["delta_map_small_pts"]) == pytest.approx(2.5)
    assert float(line["delta_map_small_pts_ci95_low"]) == pytest.approx(change_low)
    assert float(line["delta_map_small_pts_ci95_high"]) == pytest.approx(change_high)
    assert line["map_small_pct_images_ci95_low"] == ""  # three seeds: the interval is over them


def test_a_seed_without_map_small_is_left_out_and_n_counts_the_seeds_used(tmp_path):
    # seed 2 has no map_small (None in memory; NaN, COCO's "no ground truth", is written as null in a record)
    for value in (None, float("nan")):
        rows = build_rows([distilled(0), distilled(1), distilled(2, map_small=value)])
        kd = rows[1]
        small = kd.metric_summary("map_small")
        mean, (low, high) = t_interval([12.5, 15.0])  # 13.75 [-2.13, 29.63]
        assert small.pct.n == 2 and small.pct.mean == pytest.approx(mean)
        assert small.pct.ci95 == pytest.approx((low, high))
        change, (change_low, change_high) = t_interval([2.5, 3.0])  # the seeds both sides have
        assert small.change.n == 2 and small.delta_pts == pytest.approx(change)
        assert small.change.ci95 == pytest.approx((change_low, change_high))
        assert kd.accuracy_pct.n == 3 and len(kd.seeds) == 3  # map keeps all three
        cells = markdown_row(to_markdown(rows), DETECTOR, "scalekd")
        assert cells["map_small (%)"] == f"{mean:.2f} ± 1.77 [{low:.2f}, {high:.2f}] (2 of 3 seeds)"
        assert cells["Δ map_small (pts)"].endswith("(2 of 3 seeds)")
        line = csv_lines(rows)[1]
        assert (line["n"], line["map_small_n"], line["delta_map_small_n"]) == ("3", "2", "2")

    # The same through a results folder (NaN written as null), and a student without map_small: no change there.
    records = [distilled(0, student_map_small=float("nan")), distilled(1), distilled(2, map_small=float("nan"))]
    for record in records:
        append_record(tmp_path / "records.jsonl", record)
    kd = write_report(tmp_path).rows[1].metric_summary("map_small")
    assert kd.pct.n == 2 and kd.change.n == 1 and kd.change.verdict == "one seed"
    assert kd.delta_pts == pytest.approx(3.0)

    # Data without small objects at all (or records older than map_small): no numbers, empty cells, no crash.
    for value in (float("nan"), ABSENT):
        rows = build_rows([distilled(seed, map_small=value, student_map_small=value) for seed in range(3)])
        for row in rows:
            assert row.metric_summary("map_small").pct is None and row.metric_summary("map_small").change is None
        cells = markdown_row(to_markdown(rows), DETECTOR, "scalekd")
        assert cells["map_small (%)"] == cells["Δ map_small (pts)"] == ""
        assert cells["accuracy (%)"].startswith("33.77 ± 0.75")
        assert all(line["map_small_n"] == line["delta_map_small_pts"] == "" for line in csv_lines(rows))


def test_a_detection_row_of_one_seed_shows_map_small_over_its_images():
    record = distilled(0, metrics_ci95={"resamples": 200, "map": [0.32, 0.34], "map_small": [0.11, 0.14]})
    record["baseline"]["metrics_ci95"] = {"resamples": 200, "map": [0.29, 0.31], "map_small": [0.09, 0.11]}
    rows = build_rows([record])
    markdown = to_markdown(rows)
    cells = markdown_row(markdown, DETECTOR, "scalekd")
    assert cells["map_small (%)"] == "12.50 (1 seed; images [11.00, 14.00])"
    assert cells["Δ map_small (pts)"] == "+2.50 (1 seed)"
    assert markdown_row(markdown, DETECTOR, "none")["map_small (%)"] == "10.00 (1 seed; images [9.00, 11.00])"
    assert rows[1].metric_summary("map_small").ci95 == pytest.approx((11.0, 14.0))
    line = csv_lines(rows)[1]
    assert float(line["map_small_pct_images_ci95_low"]) == pytest.approx(11.0)
    assert float(line["map_small_pct_images_ci95_high"]) == pytest.approx(14.0)
    assert line["map_small_pct_ci95_low"] == "" and line["delta_map_small_verdict"] == "one seed"


def test_a_table_of_classifiers_and_detectors_leaves_the_classifiers_map_small_cells_empty():
    records = [compressed(seed, 1.0) for seed in range(3)] + [distilled(seed) for seed in range(3)]
    rows = build_rows(records)
    classifier = next(row for row in rows if row.key.task == "classification" and not row.is_baseline)
    assert classifier.metric_summary("map_small") is None and classifier.metrics[0].metric == "top1"
    markdown = to_markdown(rows)
    cells = markdown_row(markdown, MODEL, "ptq_int8")
    assert cells["map_small (%)"] == cells["Δ map_small (pts)"] == "" and cells["Δ acc (pts)"].endswith("better")
    assert markdown_row(markdown, DETECTOR, "scalekd")["Δ map_small (pts)"] == "+2.50 [+1.26, +3.74] better"


def _stage_records(seed, top1s, paired=True):
    """One seed of a two-stage recipe: the original at top1s[0] (4 ms), stage a at top1s[1] (2 ms), stage b at
    top1s[2] (1 ms); with `paired`, each stage's paired rounds against the original and the stage before."""

    def measured(top1, ms):
        return {"metrics": {"top1": top1}, "latency_ms": {"median": ms}, "size_bytes": 1000, "params": 10,
                "flops": 100, "runtime": {"runtime": "onnxruntime", "precision": "fp32"}}  # fmt: skip

    base, first, second = measured(top1s[0], 4.0), measured(top1s[1], 2.0), measured(top1s[2], 1.0)
    records = []
    for index, (name, stage, previous) in enumerate([("a", first, base), ("b", second, first)]):
        record = recipe_stage_record(name, index, stage, previous, base, seed)
        if paired:
            # stage b against a: 0.5 +- 0.01 per seed; against the original 0.25 + 0.01 * seed
            record["vs_baseline"] = {
                "latency": {"ratio": 0.5 / (index + 1) + 0.01 * seed, "ci95": [0.1, 0.9], "rounds": 7},
                "latency_vs_previous": {"ratio": 0.49 + 0.01 * seed, "ci95": [0.45, 0.55], "rounds": 7},
            }
            record["vs_baseline"]["latency"]["verdict"] = record["vs_baseline"]["latency_vs_previous"]["verdict"] = (
                "faster"
            )
        records.append(record)
    return records


def _waterfall_row(table, stage):
    (row,) = [line.split(" | ") for line in table.splitlines() if line.startswith(f"| {stage}")]
    return row


def test_the_waterfall_pairs_each_stage_with_the_same_seeds_stage_before_and_original():
    # Per seed (original, a, b): b - a = [0.9, 1.0, 1.1] points, b - original = [-2.0, 0.5, 4.0] points.
    stages = [(0.70, 0.671, 0.680), (0.75, 0.745, 0.755), (0.80, 0.829, 0.840)]
    records = [record for seed, top1s in enumerate(stages) for record in _stage_records(seed, top1s)]
    table = waterfall_table(records)
    title = table.splitlines()[0]
    assert "seeds 0, 1, 2" in title and "95 % interval" in title
    row = _waterfall_row(table, "2. b")
    mean, (low, high) = t_interval([68.0, 75.5, 84.0])
    std = statistics.stdev([68.0, 75.5, 84.0])
    assert row[3] == f"{mean:.2f} ± {std:.2f} [{low:.2f}, {high:.2f}]"
    assert row[4] == "+1.00 [+0.75, +1.25] better"
    assert row[5] == "+0.83 [-6.65, +8.32] same within noise"
    # speed-up prev from latency_vs_previous (1 / [0.49, 0.50, 0.51]), base from latency (1 / [0.25, 0.26, 0.27])
    log_mean, (log_low, log_high) = t_interval([math.log(r) for r in (0.49, 0.50, 0.51)])
    assert row[7] == f"{math.exp(-log_mean):.2f}x [{math.exp(-log_high):.2f}x, {math.exp(-log_low):.2f}x] faster"
    assert row[7] == "2.00x [1.90x, 2.10x] faster"
    log_mean, _ = t_interval([math.log(r) for r in (0.25, 0.26, 0.27)])
    assert row[8].startswith(f"{math.exp(-log_mean):.2f}x [") and row[8].endswith(" faster")


def test_a_waterfall_of_one_seed_says_so_and_prints_no_interval_over_seeds():
    table = waterfall_table(_stage_records(0, (0.70, 0.701, 0.680), paired=False))
    assert table.splitlines()[0].endswith("seed 0 (one seed: no interval over seeds)")
    row = _waterfall_row(table, "2. b")
    assert row[3:9] == ["68.00", "-2.10", "-2.00", "1.00", "2.00x", "4.00x"]
    assert not any("[" in line for line in table.splitlines()[1:])
    # With the run's paired rounds, the speed-ups carry that run's own interval, marked as rounds.
    row = _waterfall_row(waterfall_table(_stage_records(0, (0.70, 0.701, 0.680))), "2. b")
    assert row[7] == "2.04x [1.82x, 2.22x] faster (7 rounds)"  # 1 / 0.49; 1 / 0.55, 1 / 0.45
    assert "[" not in row[3] and "[" not in row[4]


def _two_recipes(control_b_top1s, shared_first_stage=False):
    """Recipe "r" (stages a, b) and its control "r_control" over 3 seeds: per seed the same original and stage a;
    stage b of "r" at R_TOP1S[seed][2], the control's at `control_b_top1s[seed]`. As compress.py records them: the
    two recipes' stage settings differ (their `variant`), each seed's baseline is one checkpoint for both."""
    records = []
    for seed, (top1s, control_b) in enumerate(zip(R_TOP1S, control_b_top1s, strict=True)):
        for name, b in (("r", top1s[2]), ("r_control", control_b)):
            for record in _stage_records(seed, (*top1s[:2], b), paired=False):
                record["recipe"].update(name=name, variant=f"settings-of-{name}")
                record["baseline"] = {**record["baseline"], "checkpoint": f"baseline-s{seed}.ckpt"}
                record["artifact"] = f"{name if record['recipe']['index'] or not shared_first_stage else 'r'}-{seed}"
                records.append(record)
    return records


R_TOP1S = [(0.70, 0.671, 0.680), (0.75, 0.745, 0.755), (0.80, 0.829, 0.840)]


def test_two_recipes_are_set_against_each_other_stage_by_stage_paired_by_seed():
    from edgecomp.report.recipe_contrast import recipe_contrasts

    # stage b: r - r_control = [+0.9, +1.0, +1.1] points though the seeds' b spread over 16 points: better
    (table,) = recipe_contrasts(_two_recipes([0.671, 0.745, 0.829]))
    assert table.splitlines()[0].startswith("recipe=r - recipe=r_control: m on d, device=cpu, seeds 0, 1, 2")
    assert _waterfall_row(table, "2")[1:] == ["b", "b", "+1.00 [+0.75, +1.25] better |"]
    # [-2.0, +0.5, +4.0] points: same within noise; the same seeds' first stage, equal, reads no difference
    (table,) = recipe_contrasts(_two_recipes([0.700, 0.750, 0.800]))
    mean, (low, high) = t_interval([-2.0, 0.5, 4.0])
    assert _waterfall_row(table, "2")[3] == f"{mean:+.2f} [{low:+.2f}, {high:+.2f}] same within noise |"
    assert _waterfall_row(table, "1")[3].startswith("+0.00 [+0.00, +0.00] same within noise")
    # a stage both recipes share (one run per seed, the same artifact) says so instead of a difference of zero
    (table,) = recipe_contrasts(_two_recipes([0.700, 0.750, 0.800], shared_first_stage=True))
    assert _waterfall_row(table, "1")[3] == "the same run |"


def test_one_recipe_alone_or_one_seed_of_two_has_no_interval_to_contrast():
    from edgecomp.report.recipe_contrast import recipe_contrasts

    records = _two_recipes([0.671, 0.745, 0.829])
    assert recipe_contrasts([r for r in records if r["recipe"]["name"] == "r"]) == []
    (table,) = recipe_contrasts([r for r in records if r["seed"] == 1])
    assert table.splitlines()[0].endswith("seed 1 (one seed: no interval over seeds)")
    assert _waterfall_row(table, "2")[3] == "+1.00 |" and "[" not in table


def test_a_contrast_pairs_only_seeds_from_the_same_baseline_and_says_when_a_stage_has_fewer():
    from edgecomp.report.recipe_contrast import recipe_contrasts

    records = _two_recipes([0.671, 0.745, 0.829])
    # the control's seed 2 stopped after its first stage: stage b over 2 seeds ([+0.9, +1.0] points), and says so
    cut_short = [
        r for r in records if not (r["recipe"]["name"] == "r_control" and r["seed"] == 2 and r["recipe"]["index"])
    ]
    (table,) = recipe_contrasts(cut_short)
    mean, (low, high) = t_interval([0.9, 1.0])
    assert _waterfall_row(table, "2")[3] == f"{mean:+.2f} [{low:+.2f}, {high:+.2f}] better (2 of 3 seeds) |"
    # seed 0's control trained from another baseline: seed 0 is left out, not paired across baselines
    for record in records:
        if record["recipe"]["name"] == "r_control" and record["seed"] == 0:
            record["baseline"] = {**record["baseline"], "checkpoint": "another-baseline.ckpt"}
    (table,) = recipe_contrasts(records)
    assert "seeds 1, 2 (" in table.splitlines()[0]
    # a recipe of another length is not set against these stage by stage
    longer = [{**r, "recipe": {**r["recipe"], "name": "r3", "stages": ["a", "b", "c"]}} for r in records[:2]]
    assert len(recipe_contrasts(records + longer)) == 1


# --------------------------------------------------------------------------------------------------- Pareto plot

BLUE = np.array([31, 119, 180])  # matplotlib's C0: the first model's colour


def _render(figure):
    """The figure as RGB pixels, and a function from data to pixel (column, line) on its first panel."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")  # draws it: the transforms below are the drawn ones
    pixels = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")).astype(int)
    axes = figure.axes[0]

    def to_pixel(x, y):
        column, up = axes.transData.transform((x, y))
        return round(column), pixels.shape[0] - round(up)

    return pixels, to_pixel


def _blue_near(pixels, column, line, reach=1):
    """Whether a pixel within `reach` of (column, line) is the model's blue (anti-aliasing blends it with white)."""
    window = pixels[line - reach : line + reach + 1, column - reach : column + reach + 1].reshape(-1, 3)
    return bool(np.any(np.abs(window - BLUE).sum(axis=1) < 90))


def test_the_pareto_plot_draws_each_rows_intervals_on_both_axes():
    seeds_top1, seeds_ms = (0.70, 0.74, 0.75), (10.0, 14.0, 12.0)
    records = [
        make_record(MODEL, "none", seed, top1, ms, 6_000_000, 5_500_000)
        for seed, (top1, ms) in enumerate(zip(seeds_top1, seeds_ms, strict=True))
    ]
    (row,) = build_rows(records)
    figure = pareto_figure([row])
    (container,) = [c for c in figure.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert container.has_xerr and container.has_yerr
    # The bars' ends are the t intervals over the seeds, worked out here.
    accuracy, (acc_low, acc_high) = t_interval([70.0, 74.0, 75.0])
    latency, (ms_low, ms_high) = t_interval(list(seeds_ms))
    segments = [segment for collection in container.lines[2] for segment in collection.get_segments()]
    vertical = [s for s in segments if s[0][0] == s[1][0]]
    horizontal = [s for s in segments if s[0][1] == s[1][1]]
    assert [sorted(s[:, 1]) for s in vertical] == [pytest.approx([acc_low, acc_high])]
    assert [sorted(s[:, 0]) for s in horizontal] == [pytest.approx([ms_low, ms_high])]

    # In the image: the model's blue along each bar, three quarters of the way out, and none past its end.
    pixels, to_pixel = _render(figure)
    column, _ = to_pixel(latency, accuracy)
    _, line = to_pixel(latency, accuracy + 0.75 * (acc_high - accuracy))
    assert _blue_near(pixels, column, line)
    _, top = to_pixel(latency, acc_high)
    assert not _blue_near(pixels, column, top - 6)  # 6 pixels above the cap
    far, row_line = to_pixel(latency - 0.75 * (latency - ms_low), accuracy)
    assert _blue_near(pixels, far, row_line)
    left, _ = to_pixel(ms_low, accuracy)
    assert not _blue_near(pixels, left - 6, row_line)

    # The same point from one seed without intervals: the marker, no bars.
    (single,) = build_rows(records[:1])
    figure = pareto_figure([single])
    (container,) = [c for c in figure.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert not container.has_xerr and not container.has_yerr
    pixels, to_pixel = _render(figure)
    column, line = to_pixel(10.0, 70.0)
    assert _blue_near(pixels, column, line)  # the marker
    assert not _blue_near(pixels, column, line - 25) and not _blue_near(pixels, column + 25, line)


def test_the_pareto_plot_draws_a_one_seed_rows_own_intervals():
    record = make_record(
        MODEL,
        "none",
        0,
        0.70,
        10.0,
        6_000_000,
        5_500_000,
        metrics_ci95={"top1": [0.68, 0.71]},
        latency_ms={"median": 10.0, "mean": 10.5, "ci95": [9.0, 12.0]},
    )
    figure = pareto_figure(build_rows([record]))
    (container,) = [c for c in figure.axes[0].containers if isinstance(c, ErrorbarContainer)]
    segments = [segment for collection in container.lines[2] for segment in collection.get_segments()]
    ends = sorted((tuple(sorted(s[:, 0])), tuple(sorted(s[:, 1]))) for s in segments)
    # the latency bar at 70 % from 9 to 12 ms; the accuracy bar at 10 ms from 68 to 71 %
    assert ends == [
        (pytest.approx((9.0, 12.0)), pytest.approx((70.0, 70.0))),
        (pytest.approx((10.0, 10.0)), pytest.approx((68.0, 71.0))),
    ]
