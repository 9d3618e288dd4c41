"""The benchmark scripts run (tiny settings: what they print is measured, not asserted here)."""

import math

from benchmarks import cpu_runtimes, int8_runtimes, ptq_int8


def test_cpu_runtimes_benchmark_measures_both_runtimes(capsys):
    (row,) = cpu_runtimes.main(
        [
            "--models",
            "mobilenetv3_small_100",
            "--image-size",
            "32",
            "--images",
            "2",
            "--runs",
            "2",
            "--num-classes",
            "4",
        ]
    )
    assert row["torch_ms"] > 0 and row["onnxruntime_ms"] > 0
    assert math.isclose(row["speedup"], row["torch_ms"] / row["onnxruntime_ms"])
    assert "mobilenetv3_small_100" in capsys.readouterr().out


def test_ptq_int8_benchmark_measures_fp32_and_int8_in_one_run(tmp_path, data_dir, capsys):
    (row,) = ptq_int8.main(
        [
            "--models",
            "mobilenetv3_small_100",
            "--variants",
            "default",
            "--image-size",
            "32",
            "--epochs",
            "1",
            "--images",
            "2",
            "--results",
            str(tmp_path),
            "--data",
            str(data_dir),
        ]
    )
    assert row["fp32_ms"] > 0 and row["int8_ms"] > 0
    assert math.isclose(row["speedup"], row["fp32_ms"] / row["int8_ms"])
    assert row["size_ratio"] < 0.35  # the INT8 file against the FP32 file of the same export
    assert "mobilenetv3_small_100" in capsys.readouterr().out


def test_int8_runtimes_benchmark_times_fp32_and_int8_with_and_without_layout_optimisation(capsys):
    rows = int8_runtimes.main(
        ["--models", "mobilenetv3_small_100", "--runtimes", "ort", "ort_no_layout", "--image-size", "32"]
        + ["--images", "2", "--runs", "2"]
    )
    assert [row["runtime"] for row in rows] == ["ort", "ort_no_layout"]
    for row in rows:
        assert row["fp32_ms"] > 0 and row["int8_ms"] > 0
        assert math.isclose(row["speedup"], row["fp32_ms"] / row["int8_ms"])
    assert "mobilenetv3_small_100" in capsys.readouterr().out
