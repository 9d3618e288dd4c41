"""The long tier (`python -m pytest -m slow`): the default pipeline as the README's first command runs it."""

import pytest

from tests.conftest import read_jsonl, run_cli


@pytest.mark.slow
def test_default_pipeline_learns_the_generated_dataset(tmp_path):
    run_cli("train.py", f"paths.results={tmp_path / 'results'}", f"paths.data={tmp_path / 'data'}", timeout=1200)
    (record,) = read_jsonl(tmp_path / "results" / "records.jsonl")
    assert record["model"] == "mobilenetv3_small_100" and record["dataset"] == "synthetic_cls"
    assert record["latency_ms"]["images"] == 1000
    # 10 classes: chance is 0.1. The default budget must learn the shapes and colours, not guess.
    assert record["metrics"]["top1"] >= 0.6
