"""compressor=fastnas through the command line (slow): experiment=smoke_fastnas prunes YOLOv8n with compress.py and
evaluate.py restores the artifact and reproduces its record."""

from __future__ import annotations

import fnmatch

import pytest

from tests.conftest import read_jsonl, run_cli


@pytest.mark.slow
def test_smoke_fastnas_prunes_yolov8n_and_evaluate_reproduces_it(tmp_path, data_dir):
    """`experiment=smoke_fastnas` through both entry points: YOLOv8n within 66% of its FLOPs, fewer parameters, and
    `evaluate.py checkpoint=<artifact>` (a fresh model restored by ModelOpt) gives the record's numbers again."""
    common = ["experiment=smoke_fastnas", f"paths.results={tmp_path}", f"paths.data={data_dir}", "logger=none"]
    proc = run_cli("compress.py", *common, "trainer.enable_progress_bar=false", timeout=600)
    (record,) = read_jsonl(tmp_path / "records.jsonl")
    assert "| FLOPs" in proc.stdout and "mAP@50-95" in proc.stdout  # the report's table
    assert record["model"] == "yolov8n" and record["compressor"] == "fastnas"
    assert record["flops"] <= 0.66 * record["baseline"]["flops"]
    assert record["params"] < record["baseline"]["params"]
    searched = record["fastnas"]["subnet_config"]
    assert any("network.model.22" in name for name in searched)  # the head is searched
    patterns = record["compression"]["search_layers"]  # ... and only the layers the smoke names
    assert all(any(fnmatch.fnmatch(name, pattern) for pattern in patterns) for name in searched)

    run_cli("evaluate.py", *common, f"checkpoint={record['checkpoint']}")
    _, evaluated = read_jsonl(tmp_path / "records.jsonl")
    assert evaluated["metrics"] == record["metrics"]
    for field in ("params", "flops", "size_bytes", "gzip_bytes"):
        assert evaluated[field] == record[field], field
