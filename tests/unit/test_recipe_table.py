"""A recipe's waterfall table from records built with known numbers: the deltas to the stage before and to the
original, and over two seeds their intervals (tests/integration/test_recipe.py: recipes run)."""

from edgecomp.report.waterfall import waterfall_table
from tests.helpers.records import recipe_stage_record


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
