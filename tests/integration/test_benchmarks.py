"""The benchmark scripts run (tiny settings): each times what it says it times, and its printed table is the rows
it returns. The timings themselves are measured, not asserted here: a timed test would measure the machine's load."""

import json
import math
import statistics
from pathlib import Path

import pytest

from benchmarks import cpu_runtimes, deploy_runtimes, int8_runtimes, ptq_int8
from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntimePredictor
from edgecomp.evaluate.runtimes.torch_eager import TorchEagerPredictor


@pytest.fixture
def timed(monkeypatch):
    """Every round of every side the benchmarks time, in order: (predictor type, number of images, desc, the ms per
    image of its passes, warm-up first). The paired timing opens each side's session and times its passes there."""
    from edgecomp.evaluate import paired_latency

    calls = []
    original = paired_latency.time_passes

    def time_passes(predictor, batches, count, passes, desc="latency"):
        timed_passes = original(predictor, batches, count, passes, desc)
        calls.append((type(predictor), count, desc, timed_passes))
        return timed_passes

    monkeypatch.setattr(paired_latency, "time_passes", time_passes)
    return calls


def speedup_from_rounds(calls: list, side: str, reference: str) -> float:
    """`side`'s speed-up over `reference` recomputed from the timed passes: the geometric mean over rounds of
    reference ms / side ms, each side's round the median of its passes after the one warm-up."""
    medians = {
        name: [statistics.median(passes[1:]) for _, _, desc, passes in calls if desc.endswith(name)]
        for name in (side, reference)
    }
    ratios = [r / s for s, r in zip(medians[side], medians[reference], strict=True)]
    return math.exp(statistics.fmean(math.log(r) for r in ratios))


def assert_cell(cell: str, row: dict, prefix: str = "") -> None:
    """A printed speed-up cell is the row's: `1.23x [1.01, 1.50] faster`."""
    low, high = row[f"{prefix}speedup_ci95"]
    # the verdict reads the interval the way the speed-up points: faster only above 1, slower only below
    assert (row[f"{prefix}verdict"] == "faster") == (low > 1) and (row[f"{prefix}verdict"] == "slower") == (high < 1)
    assert low <= row[f"{prefix}speedup"] <= high
    assert cell == f"{row[f'{prefix}speedup']:.2f}x [{low:.2f}, {high:.2f}] {row[f'{prefix}verdict']}"


def printed_row(output: str, *leading: str) -> list[str]:
    """The cells of the one printed table line that starts with `leading`."""
    (line,) = [line.split() for line in output.splitlines() if line.split()[: len(leading)] == list(leading)]
    return line[len(leading) :]


def test_cpu_runtimes_benchmark_times_both_runtimes_against_each_other(capsys, timed):
    (row,) = cpu_runtimes.main(
        ["--models", "mobilenetv3_small_100", "--image-size", "32", "--images", "2", "--runs", "2", "--rounds", "2"]
        + ["--num-classes", "4"]
    )
    # torch eager then ONNX Runtime, then the other way round: 2 alternating rounds, each on the same 2 images
    assert [(predictor, images) for predictor, images, _, _ in timed] == [
        (TorchEagerPredictor, 2),
        (OnnxRuntimePredictor, 2),
        (OnnxRuntimePredictor, 2),
        (TorchEagerPredictor, 2),
    ]
    assert row["model"] == "mobilenetv3_small_100"
    assert row["speedup"] == pytest.approx(speedup_from_rounds(timed, "onnxruntime", "torch"))
    # The printed line is the returned row, each figure under its own column.
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("mobilenetv3_small_100"))
    assert line.split()[1:3] == [f"{row['torch_ms']:.2f}", f"{row['onnxruntime_ms']:.2f}"]
    assert_cell(line.split(maxsplit=3)[3], row)


def test_ptq_int8_benchmark_measures_fp32_and_int8_in_one_run(tmp_path, data_dir, capsys):
    (row,) = ptq_int8.main(
        ["--models", "mobilenetv3_small_100", "--variants", "default", "--image-size", "32", "--epochs", "1"]
        + ["--images", "2", "--results", str(tmp_path), "--data", str(data_dir)]
    )
    # The row is the compress.py record's own FP32 baseline and INT8 file, measured in the same run.
    (record,) = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert record["compressor"] == "ptq_int8" and record["runtime"]["precision"] == "int8"
    assert record["baseline"]["runtime"]["precision"] == "fp32"
    assert (record["latency_ms"]["images"], record["baseline"]["latency_ms"]["images"]) == (2, 2)
    assert (row["fp32_ms"], row["int8_ms"]) == (
        record["baseline"]["latency_ms"]["median"],
        record["latency_ms"]["median"],
    )
    # the speed-up is the record's paired one (the two files timed against each other in rounds), inverted
    paired = record["vs_baseline"]["latency"]
    assert math.isclose(row["speedup"], 1 / paired["ratio"]) and row["verdict"] == paired["verdict"]
    assert row["speedup_ci95"] == pytest.approx((1 / paired["ci95"][1], 1 / paired["ci95"][0]))
    assert (row["fp32_top1"], row["int8_top1"]) == (record["baseline"]["metrics"]["top1"], record["metrics"]["top1"])
    assert row["drop_points"] == pytest.approx(100 * (row["fp32_top1"] - row["int8_top1"]))
    assert row["size_ratio"] == record["size_bytes"] / record["baseline"]["size_bytes"]
    assert row["size_ratio"] < 0.35  # the INT8 file against the FP32 file of the same export
    assert printed_row(capsys.readouterr().out, "mobilenetv3_small_100", "default") == [
        f"{row['fp32_ms']:.2f}",
        f"{row['int8_ms']:.2f}",
        f"{row['speedup']:.2f}x",
        f"[{row['speedup_ci95'][0]:.2f},",
        f"{row['speedup_ci95'][1]:.2f}]",
        *row["verdict"].split(),
        f"{row['fp32_top1']:.3f}",
        f"{row['int8_top1']:.3f}",
        f"{row['drop_points']:.2f}",
        f"{row['size_ratio']:.2f}x",
        "int8",  # the file written: full INT8 (no mixed precision in this variant)
        "-",
        "-",
    ]


def test_int8_runtimes_benchmark_times_fp32_and_int8_with_and_without_layout_optimisation(capsys, timed, ort_loads):
    rows = int8_runtimes.main(
        ["--models", "mobilenetv3_small_100", "--runtimes", "ort", "ort_no_layout", "--image-size", "32"]
        + ["--images", "2", "--runs", "2", "--rounds", "2"]
    )
    assert [row["runtime"] for row in rows] == ["ort", "ort_no_layout"]
    # Each runtime setting times the FP32 file against the INT8 file made from it, in 2 alternating rounds.
    loaded = [(name, layout) for name, layout, _ in ort_loads]
    assert loaded == [("fp32.onnx", True), ("int8.onnx", True), ("int8.onnx", True), ("fp32.onnx", True)] + [
        ("fp32.onnx", False),
        ("int8.onnx", False),
        ("int8.onnx", False),
        ("fp32.onnx", False),
    ]
    assert all(predictor is OnnxRuntimePredictor and images == 2 for predictor, images, _, _ in timed)
    output = capsys.readouterr().out
    for index, row in enumerate(rows):
        calls = timed[4 * index : 4 * index + 4]
        assert row["speedup"] == pytest.approx(speedup_from_rounds(calls, "int8", "fp32"))
        (line,) = [line for line in output.splitlines() if line.split()[:2] == [row["model"], row["runtime"]]]
        assert line.split()[2:4] == [f"{row['fp32_ms']:.2f}", f"{row['int8_ms']:.2f}"]
        assert_cell(line.split(maxsplit=4)[4], row)


def test_deploy_runtimes_benchmark_times_every_deployment_of_the_same_network(capsys, timed, ort_loads):
    (row,) = deploy_runtimes.main(
        ["--cases", "yolov8n:64", "--images", "2", "--runs", "2", "--rounds", "2", "--threads", "1"]
    )
    # eager, edgecomp's FP32 and INT8 files, Ultralytics' own export, then the reverse: each on the same 2 images
    order = [TorchEagerPredictor, OnnxRuntimePredictor, OnnxRuntimePredictor, OnnxRuntimePredictor]
    assert [(predictor, images) for predictor, images, _, _ in timed] == [(p, 2) for p in order + order[::-1]]
    files = ["fp32.onnx", "int8.onnx", "yolov8n.onnx"]
    assert [name for name, _, _ in ort_loads] == files + files[::-1]
    assert row["ultralytics_note"] is None and row["weights"] == "random init"
    assert row["ort_over_torch_speedup"] == pytest.approx(speedup_from_rounds(timed, "ORT FP32", "torch"))
    assert row["int8_over_fp32_speedup"] == pytest.approx(speedup_from_rounds(timed, "ORT INT8", "ORT FP32"))
    assert row["vs_ultralytics_speedup"] == pytest.approx(speedup_from_rounds(timed, "ORT FP32", "Ultralytics' ONNX"))
    output = capsys.readouterr().out
    assert "random-init weights" in output
    cells = [cell.strip() for cell in next(line for line in output.splitlines() if "yolov8n:64" in line).split("|")]
    assert cells[2:6] == [f"{row[key]:.2f}" for key in ("torch_ms", "ort_fp32_ms", "ort_int8_ms", "ultralytics_ms")]
    for cell, prefix in zip(cells[6:9], ("ort_over_torch_", "int8_over_fp32_", "vs_ultralytics_"), strict=True):
        assert_cell(cell, row, prefix)


def test_the_fast_points_divisor_is_where_latency_steps():
    from benchmarks.channel_divisor import fast_divisor, no_faster_share

    counts = range(40, 73)
    blocks_of_16 = {c: 1.0 + -(-c // 16) for c in counts}  # every count costs what the next multiple of 16 costs
    assert fast_divisor(blocks_of_16, [2, 4, 8, 16, 32], 0.03) == 16
    assert no_faster_share(blocks_of_16, 32, 0.03) < 0.75  # 40..48 run faster than 64: 32 is too coarse
    blocks_of_8 = {c: 1.0 + -(-c // 8) for c in counts}
    assert fast_divisor(blocks_of_8, [2, 4, 8, 16, 32], 0.03) == 8
    linear = {c: c - 30.0 for c in counts}  # every channel costs, well above the tolerance: no fast points
    assert fast_divisor(linear, [2, 4, 8, 16, 32], 0.03) == 1


def test_the_channel_divisor_benchmark_times_each_count_with_the_devices_runtime(capsys, ort_loads):
    from benchmarks import channel_divisor

    result = channel_divisor.main(
        ["--channels", "47", "49", "--rounds", "2", "--images", "2", "--runs", "2", "--warmup", "0", "--threads", "1"]
    )
    assert (
        sorted(result["ms"]) == [47, 48, 49]
        and [(Path(name).suffix, threads) for name, _, threads in ort_loads] == [(".onnx", 1)] * 6
    )  # a fresh session per round and count
    assert result["divisor"] == channel_divisor.fast_divisor(result["ms"], [2, 4, 8, 16, 32], 0.03)
    out = capsys.readouterr().out
    assert f"fast points: multiples of {result['divisor']}" in out
    for count, ms in result["ms"].items():
        assert any(line.split()[:2] == [str(count), f"{ms:.3f}"] for line in out.splitlines())
