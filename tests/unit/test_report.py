"""evaluate.py report=DIR: the table (mean ± std and the t interval over seeds, changes to the records' own
baselines), its CSV, the Pareto plot, and bad input, from records built with known numbers (tests/helpers/records.py).
(tests/unit/test_report_intervals.py: the intervals and verdicts themselves; tests/e2e/test_report_cli.py: the
command line and the W&B table.)"""

import csv
import json
import math

import pytest
from PIL import Image

from edgecomp.errors import ConfigError, DatasetError, EdgecompError
from edgecomp.evaluate.record import RecordError, append_record
from edgecomp.pipelines import evaluate
from edgecomp.pipelines.report import PARETO_PNG, TABLE_CSV, TABLE_MD, write_report
from edgecomp.report.pareto import pareto_front
from edgecomp.report.records import load_records
from edgecomp.report.table import build_rows
from edgecomp.report.table_format import CSV_COLUMNS
from tests.conftest import compose_config
from tests.helpers.records import (
    B1,
    COMPRESSIONS,
    ORT_FP32,
    SMALL,
    TRAINED,
    compressed_record,
    make_record,
    markdown_row,
    sweep_records,
)

TORCH_FP32 = {**ORT_FP32, "runtime": "torch"}
# Student's t for a 95 % interval from 2 seeds (1 degree of freedom): the half width is T_1 * std / sqrt(2).
T_1 = 12.7062047


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    for record in sweep_records():
        append_record(folder / "records.jsonl", record)
    return folder, write_report(folder)


def row_of(rows, model, label):
    (row,) = [row for row in rows if row.key.model == model and row.key.label == label]
    return row


def test_each_configuration_is_one_row_and_each_sparsity_its_own(sweep):
    _, report = sweep
    labels = [(row.key.model, row.key.label) for row in report.rows]
    per_model = ["none", "prune_unstructured sparsity=0.25", "prune_unstructured sparsity=0.5", "ptq_int8"]
    assert labels == [(B1, label) for label in per_model] + [(SMALL, label) for label in per_model]
    assert all(row.seeds == (0, 1) for row in report.rows)
    # measurements (sparsity_reached, time_s, rss_added_peak_bytes) and the unvarying settings stay out of the label
    assert not any("reached" in label or "epochs" in label for _, label in labels)


def test_cells_are_mean_sample_std_and_t_interval_over_the_seeds(sweep):
    _, report = sweep
    base = row_of(report.rows, SMALL, "none")
    assert base.accuracy_pct.mean == pytest.approx(82.0) and base.accuracy_pct.std == pytest.approx(math.sqrt(8))
    assert base.latency_ms.mean == pytest.approx(11.0) and base.latency_ms.std == pytest.approx(math.sqrt(2))
    assert base.gzip_bytes.mean == pytest.approx(5_550_000) and base.gzip_bytes.std == pytest.approx(
        70_710.678, abs=1e-2
    )
    # two seeds: the half width is T_1 * std / sqrt(2), 12.71 * sqrt(8) / sqrt(2) = 25.41 points
    assert base.accuracy_pct.n == 2 and base.accuracy_pct.ci95 == pytest.approx((82.0 - 2 * T_1, 82.0 + 2 * T_1))
    assert base.latency_ms.ci95 == pytest.approx((11.0 - T_1, 11.0 + T_1))
    assert base.compression_time_s is None and base.is_baseline
    cells = markdown_row(report.markdown, SMALL, "none")
    assert (cells["accuracy (%)"], cells["latency (ms, median)"], cells["size (MB)"], cells["gzip (MB)"]) == (
        "82.00 ± 2.83 [56.59, 107.41]",
        "11.00 ± 1.41 [-1.71, 23.71]",
        "6.00 ± 0.00",
        "5.55 ± 0.07",
    )
    # a baseline row has no deltas and no compression time
    assert cells["Δ acc (pts)"] == cells["speed-up (base/comp)"] == cells["× size"] == cells["× gzip"] == ""
    assert cells["compress (s)"] == ""


def test_deltas_compare_with_the_records_own_baselines(sweep):
    _, report = sweep
    ptq = row_of(report.rows, SMALL, "ptq_int8")
    assert ptq.accuracy_pct.mean == pytest.approx(72.0) and ptq.accuracy_pct.std == pytest.approx(math.sqrt(8))
    assert ptq.delta_accuracy_pts == pytest.approx(-10.0)
    # -10 points in each seed: no spread, an interval of width 0 below 0
    assert ptq.accuracy_change.ci95 == pytest.approx((-10.0, -10.0)) and ptq.accuracy_change.verdict == "worse"
    # 5.5 / 11 and 6.5 / 13 against the re-measured baselines, not against train.py's 10 and 12
    assert ptq.speedup == pytest.approx(2.0)  # baseline / compressed: twice as fast
    assert ptq.speedup_interval.ci95 == pytest.approx((2.0, 2.0)) and ptq.speedup_interval.verdict == "faster"
    assert ptq.size_ratio == pytest.approx(0.25) and ptq.gzip_ratio == pytest.approx(0.25)
    assert ptq.compression_time_s.mean == pytest.approx(3.0) and ptq.compression_time_s.std == pytest.approx(
        math.sqrt(2)
    )
    pruned = row_of(report.rows, B1, "prune_unstructured sparsity=0.5")
    assert pruned.delta_accuracy_pts == pytest.approx(-6.0)
    assert pruned.size_ratio == pytest.approx(1.0) and pruned.gzip_ratio == pytest.approx(0.45)
    cells = markdown_row(report.markdown, SMALL, "ptq_int8")
    assert list(cells.values())[2:] == [
        # runtime, n, accuracy %, Δ points, latency ms, speed-up, size MB, ×, gzip MB, ×, compression s
        "onnxruntime int8",
        "2",
        "72.00 ± 2.83 [46.59, 97.41]",
        "-10.00 [-10.00, -10.00] worse",
        "6.00 ± 0.71 [-0.35, 12.35]",
        "2.00x [2.00x, 2.00x] faster",
        "1.50 ± 0.00",
        "0.25x",
        "1.39 ± 0.02",
        "0.25x",
        "3.0 ± 1.4",
    ]


def test_csv_parses_back_to_the_same_numbers(sweep):
    folder, report = sweep
    with open(folder / "report" / TABLE_CSV, newline="") as handle:
        parsed = list(csv.DictReader(handle))
    assert tuple(parsed[0]) == CSV_COLUMNS and len(parsed) == len(report.rows)
    for line, row in zip(parsed, report.rows, strict=True):
        assert (line["model"], line["compressor"], int(line["n"]), line["seeds"]) == (
            row.key.model,
            row.key.compressor,
            2,
            "0;1",
        )
        assert float(line["accuracy_pct_mean"]) == row.accuracy_pct.mean
        assert float(line["accuracy_pct_std"]) == row.accuracy_pct.std
        assert float(line["latency_ms_mean"]) == row.latency_ms.mean
        assert float(line["gzip_bytes_mean"]) == row.gzip_bytes.mean
        assert float(line["accuracy_pct_ci95_low"]) == row.accuracy_pct.ci95[0]
        assert float(line["latency_ms_ci95_high"]) == row.latency_ms.ci95[1]
        # two seeds: the interval is over them, none of one run's own
        assert line["accuracy_pct_images_ci95_low"] == line["latency_ms_passes_ci95_low"] == ""
        if row.is_baseline:
            assert line["delta_accuracy_pts"] == line["speedup"] == line["compression_time_s_mean"] == ""
            assert line["delta_accuracy_verdict"] == line["speedup_verdict"] == line["speedup_ci95_low"] == ""
        else:
            assert float(line["delta_accuracy_pts"]) == row.delta_accuracy_pts
            assert float(line["delta_accuracy_pts_ci95_high"]) == row.accuracy_change.ci95[1]
            assert float(line["speedup"]) == row.speedup
            assert float(line["speedup_ci95_low"]) == row.speedup_interval.ci95[0]
    pruned = next(line for line in parsed if line["settings"] == "sparsity=0.25" and line["model"] == SMALL)
    assert float(pruned["gzip_ratio"]) == pytest.approx(0.6)
    # -2 points in both seeds, at the same latency as its baseline (ratio 1 in both): worse, no faster or slower
    assert (pruned["delta_accuracy_verdict"], pruned["speedup_verdict"]) == ("worse", "same within noise")


def test_markdown_file_is_the_printed_table_and_the_plot_a_real_png(sweep):
    folder, report = sweep
    assert (folder / "report" / TABLE_MD).read_text() == report.markdown
    caption, blank, header, rule, *body = report.markdown.splitlines()
    # one dataset, device and metric: said once above the table, not in every row
    assert (caption, blank) == ("dataset: synthetic_cls, device: cpu, metric: top1", "")
    assert header.startswith("| model ") and set(rule) <= set("|-:") and len(body) == 8
    png = folder / "report" / PARETO_PNG
    assert png.stat().st_size > 20_000
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 600 and image.height > 400
        assert len(image.convert("RGB").getcolors(maxcolors=1_000_000)) > 50  # drawn on, not a blank canvas
    assert not list((folder / "report").glob(".*tmp*")), "no temporary file left behind"


# The sweep's table as the report wrote it before detection's map_small got columns of its own: a classification
# table must come out exactly so.
SWEEP_MARKDOWN = """\
dataset: synthetic_cls, device: cpu, metric: top1

| model                 | compressor                       | runtime          | n |                 accuracy (%) |                   Δ acc (pts) |        latency (ms, median) |                   speed-up (base/comp) |    size (MB) | × size |    gzip (MB) | × gzip | compress (s) |
|-----------------------|----------------------------------|------------------|--:|-----------------------------:|------------------------------:|----------------------------:|---------------------------------------:|-------------:|-------:|-------------:|-------:|-------------:|
| efficientnet_b1       | none                             | onnxruntime fp32 | 2 | 91.00 ± 1.41 [78.29, 103.71] |                               | 42.00 ± 2.83 [16.59, 67.41] |                                        | 30.00 ± 0.00 |        | 27.20 ± 0.28 |        |              |
| efficientnet_b1       | prune_unstructured sparsity=0.25 | onnxruntime fp32 | 2 | 89.00 ± 1.41 [76.29, 101.71] |    -2.00 [-2.00, -2.00] worse | 43.00 ± 2.83 [17.59, 68.41] | 1.00x [1.00x, 1.00x] same within noise | 30.00 ± 0.00 |  1.00x | 16.32 ± 0.17 |  0.60x |   11.0 ± 1.4 |
| efficientnet_b1       | prune_unstructured sparsity=0.5  | onnxruntime fp32 | 2 |  85.00 ± 1.41 [72.29, 97.71] |    -6.00 [-6.00, -6.00] worse | 43.00 ± 2.83 [17.59, 68.41] | 1.00x [1.00x, 1.00x] same within noise | 30.00 ± 0.00 |  1.00x | 12.24 ± 0.13 |  0.45x |   12.0 ± 1.4 |
| efficientnet_b1       | ptq_int8                         | onnxruntime int8 | 2 |  81.00 ± 1.41 [68.29, 93.71] | -10.00 [-10.00, -10.00] worse |  21.50 ± 1.41 [8.79, 34.21] |            2.00x [2.00x, 2.00x] faster |  7.50 ± 0.00 |  0.25x |  6.80 ± 0.07 |  0.25x |    3.0 ± 1.4 |
| mobilenetv3_small_100 | none                             | onnxruntime fp32 | 2 | 82.00 ± 2.83 [56.59, 107.41] |                               | 11.00 ± 1.41 [-1.71, 23.71] |                                        |  6.00 ± 0.00 |        |  5.55 ± 0.07 |        |              |
| mobilenetv3_small_100 | prune_unstructured sparsity=0.25 | onnxruntime fp32 | 2 | 80.00 ± 2.83 [54.59, 105.41] |    -2.00 [-2.00, -2.00] worse | 12.00 ± 1.41 [-0.71, 24.71] | 1.00x [1.00x, 1.00x] same within noise |  6.00 ± 0.00 |  1.00x |  3.33 ± 0.04 |  0.60x |   11.0 ± 1.4 |
| mobilenetv3_small_100 | prune_unstructured sparsity=0.5  | onnxruntime fp32 | 2 | 76.00 ± 2.83 [50.59, 101.41] |    -6.00 [-6.00, -6.00] worse | 12.00 ± 1.41 [-0.71, 24.71] | 1.00x [1.00x, 1.00x] same within noise |  6.00 ± 0.00 |  1.00x |  2.50 ± 0.03 |  0.45x |   12.0 ± 1.4 |
| mobilenetv3_small_100 | ptq_int8                         | onnxruntime int8 | 2 |  72.00 ± 2.83 [46.59, 97.41] | -10.00 [-10.00, -10.00] worse |  6.00 ± 0.71 [-0.35, 12.35] |            2.00x [2.00x, 2.00x] faster |  1.50 ± 0.00 |  0.25x |  1.39 ± 0.02 |  0.25x |    3.0 ± 1.4 |
"""


def test_a_classification_table_is_unchanged_by_the_detection_metrics(sweep):
    folder, report = sweep
    assert report.markdown == SWEEP_MARKDOWN
    assert "map_small" not in report.markdown
    # The CSV has map_small's columns in every table (one schema), after the existing ones and empty here.
    with open(folder / "report" / TABLE_CSV, newline="") as handle:
        parsed = list(csv.DictReader(handle))
    added = [column for column in CSV_COLUMNS if "map_small" in column]
    assert added and CSV_COLUMNS[-len(added) :] == tuple(added)
    assert all(line[column] == "" for line in parsed for column in added)


def test_pareto_front_keeps_the_points_nothing_beats():
    points = [(10.0, 80.0), (5.0, 70.0), (6.0, 69.0), (12.0, 79.0), (20.0, 85.0), (5.0, 60.0)]
    assert pareto_front(points) == [(5.0, 70.0), (10.0, 80.0), (20.0, 85.0)]


def test_detection_record_reports_map_as_its_accuracy(tmp_path):
    for seed, value in ((0, 0.50), (1, 0.54)):
        record = make_record("yolov8n", "none", seed, value, 34.0, 6_200_000, 5_700_000, task="detection", metric="map")
        record["metrics"].update(map50=0.9, recall=0.8)
        append_record(tmp_path / "records.jsonl", record)
    report = write_report(tmp_path)
    (row,) = report.rows
    assert (row.key.task, row.metric) == ("detection", "map")
    assert row.accuracy_pct.mean == pytest.approx(52.0) and row.accuracy_pct.std == pytest.approx(math.sqrt(8))
    assert "metric: map" in report.markdown and "52.00 ± 2.83" in report.markdown
    assert (tmp_path / "report" / PARETO_PNG).stat().st_size > 10_000


def test_records_are_found_in_every_folder_under_the_results(tmp_path):
    records = sweep_records()
    for index, record in enumerate(records):
        append_record(tmp_path / "multirun" / "sweep" / str(index % 3) / "records.jsonl", record)
    assert [row.key for row in build_rows(load_records(tmp_path))] == [row.key for row in build_rows(records)]


def test_a_seed_evaluated_twice_counts_once_with_its_latest_record(tmp_path):
    first = make_record(SMALL, "none", 0, 0.70, 10.0, 6_000_000, 5_500_000)
    again = make_record(SMALL, "none", 0, 0.80, 10.0, 6_000_000, 5_500_000)  # created later
    other_seed = make_record(SMALL, "none", 1, 0.84, 12.0, 6_000_000, 5_600_000)
    (row,) = build_rows([again, other_seed, first])
    assert row.seeds == (0, 1) and row.accuracy_pct.mean == pytest.approx(82.0)


def test_other_compressor_settings_that_differ_split_the_row(tmp_path):
    records = [compressed_record(SMALL, seed, "ptq_int8", None) for seed in (0, 1)]
    for record, method in zip(records, ("minmax", "entropy"), strict=True):
        record["config"]["compressor"].update(calibrate_method=method, op_types=["Conv", "Gemm"])
    labels = [row.key.label for row in build_rows(records)]
    # their FP32 baseline first (no record of its own measured it), then one row per calibration method
    assert labels == ["none", "ptq_int8 calibrate_method=entropy", "ptq_int8 calibrate_method=minmax"]
    records[1]["config"]["compressor"]["op_types"] = None  # a list-valued setting that differs is a key too
    labels = [row.key.label for row in build_rows(records) if not row.is_baseline]
    assert labels == [
        "ptq_int8 calibrate_method=entropy op_types=None",
        'ptq_int8 calibrate_method=minmax op_types=["Conv","Gemm"]',
    ]


def test_a_baseline_trained_until_converged_is_not_averaged_with_a_fixed_budget_one():
    fixed = [make_record(SMALL, "prune_unstructured", seed, 0.60, 10.0, 6_000_000, 5_000_000) for seed in (0, 1)]
    converged = [make_record(SMALL, "prune_unstructured", seed, 0.90, 10.0, 6_000_000, 5_000_000) for seed in (0, 1)]
    for record in converged:
        record["config"]["convergence"] = {"monitor": "val/top1", "mode": "max", "min_delta": 0.005, "patience": 5}
    for records, top1 in ((fixed, 0.70), (converged, 0.95)):  # each measured against its own baseline
        for record in records:
            record["baseline"] = {"metrics": {"top1": top1}, "runtime": record["runtime"], "latency_ms": None}
    rows = build_rows(fixed + converged)
    compressed = sorted(row.accuracy_pct.mean for row in rows if not row.is_baseline)
    baselines = sorted(row.accuracy_pct.mean for row in rows if row.is_baseline)
    assert compressed == pytest.approx([60.0, 90.0]) and baselines == pytest.approx([70.0, 95.0])
    assert {row.seeds for row in rows} == {(0, 1)}


def test_distillation_rows_are_labelled_with_temperature_alpha_and_teacher():
    records = []
    for teacher in ("mobilenetv3_large_100", "densenet201"):
        for seed in (0, 1):
            record = compressed_record(SMALL, seed, "ptq_int8", None)
            record.update(compressor="kd")
            record["compression"] = {"time_s": 30.0, "T": 10.0, "alpha": 0.1, "epochs": 5, "teacher": teacher}
            record["compression"]["loss"] = {"first": 2.0 + seed, "last": 1.0}  # measured: not a label
            record["config"]["compressor"] = {"name": "kd", "T": 10.0, "alpha": 0.1, "epochs": 5}
            records.append(record)
    rows = [row for row in build_rows(records) if not row.is_baseline]
    assert [row.key.label for row in rows] == [
        "kd T=10 alpha=0.1 teacher=densenet201",
        "kd T=10 alpha=0.1 teacher=mobilenetv3_large_100",
    ]
    assert all(row.seeds == (0, 1) for row in rows)


def test_folder_without_records_is_one_clear_error(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"empty: no records.jsonl in this folder or any folder under it"):
        write_report(tmp_path / "empty")
    with pytest.raises(DatasetError, match="no such folder"):
        write_report(tmp_path / "missing")


def test_malformed_line_names_file_and_line_and_leaves_the_old_report(tmp_path):
    path = tmp_path / "records.jsonl"
    append_record(path, make_record(SMALL, "none", 0, 0.8, 10.0, 6_000_000, 5_500_000))
    write_report(tmp_path)
    before = {name: (tmp_path / "report" / name).read_bytes() for name in (TABLE_MD, TABLE_CSV, PARETO_PNG)}
    with open(path, "a") as handle:
        handle.write('\n{"task": "classification", "metrics": \n')
    with pytest.raises(EdgecompError, match=r"records.jsonl:3: not a JSON record"):
        write_report(tmp_path)
    assert {name: (tmp_path / "report" / name).read_bytes() for name in before} == before


def test_record_the_report_cannot_use_names_file_and_line(tmp_path):
    path = tmp_path / "records.jsonl"
    append_record(path, make_record(SMALL, "none", 0, 0.8, 10.0, 6_000_000, 5_500_000))
    with open(path, "a") as handle:
        handle.write("\n" + json.dumps({"task": "classification", "dataset": "synthetic_cls"}) + "\n")
        handle.write(json.dumps([1, 2]) + "\n")
    with pytest.raises(RecordError, match=r"records.jsonl:3: record lacks \['model', 'compressor'"):
        write_report(tmp_path)


def test_report_evaluates_nothing_else(tmp_path):
    cfg = compose_config("evaluate", [f"report={tmp_path}", "checkpoint=model.ckpt"])
    with pytest.raises(
        ConfigError, match="takes one of checkpoint=, artifact=, predictions= and report=; got checkpoint and report"
    ):
        evaluate.run(cfg)


def test_the_report_and_a_runs_own_comparison_agree_on_the_same_record():
    """One compressed record: the report's speed-up is the inverse of the record's own vs_baseline latency ratio
    (both the median), and its size ratio the files' ratio."""
    from edgecomp.report.comparison import vs_baseline

    for compressor, sparsity in COMPRESSIONS:
        record = compressed_record(SMALL, 0, compressor, sparsity)
        (row,) = [row for row in build_rows([record]) if not row.is_baseline]
        assert row.speedup == pytest.approx(1 / vs_baseline(record)["latency_ratio"])
        assert row.size_ratio == pytest.approx(record["size_bytes"] / record["baseline"]["size_bytes"])


def test_a_baseline_no_record_measured_is_a_row_and_rows_never_mix_runtimes():
    """An eager sweep (device=cpu_torch: train.py's baselines in torch FP32) with an INT8 file compared against the
    FP32 ONNX file: the FP32 ONNX baseline is a row of its own, beside the torch one, with the numbers the INT8
    records measured it at; no row averages records of two runtimes."""
    records = [make_record(SMALL, "none", seed, *TRAINED[(SMALL, seed)], runtime=TORCH_FP32) for seed in (0, 1)]
    records += [compressed_record(SMALL, seed, "ptq_int8", None) for seed in (0, 1)]
    rows = build_rows(records)
    assert [(row.key.label, row.key.runtime) for row in rows] == [
        ("none", "onnxruntime fp32"),
        ("none", "torch fp32"),
        ("ptq_int8", "onnxruntime int8"),
    ]
    onnx_baseline, torch_baseline, ptq = rows
    assert torch_baseline.latency_ms.mean == pytest.approx(11.0)  # train.py's (10 + 12) / 2
    assert onnx_baseline.latency_ms.mean == pytest.approx(12.0)  # the re-measured FP32 file's (11 + 13) / 2
    assert onnx_baseline.is_baseline and onnx_baseline.size_bytes.mean == pytest.approx(6_000_000)
    assert ptq.latency_ms.mean == pytest.approx(6.0) and ptq.speedup == pytest.approx(
        onnx_baseline.latency_ms.mean / 6.0
    )


def test_compress_none_is_a_baseline_row_without_deltas():
    """compress.py's compressor=none record carries itself as its baseline: a baseline row, not a 1.00x row."""
    record = make_record(SMALL, "none", 0, *TRAINED[(SMALL, 0)])
    record["baseline"] = {key: record[key] for key in ("metrics", "latency_ms", "size_bytes", "gzip_bytes", "runtime")}
    record["compression"] = {"time_s": 0.0}
    (row,) = build_rows([record])
    assert row.is_baseline and row.speedup is None and row.delta_accuracy_pts is None and row.size_ratio is None
