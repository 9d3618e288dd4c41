"""The benchmark scripts run (tiny settings: what they print is measured, not asserted here)."""

import math

from benchmarks import cpu_runtimes


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
