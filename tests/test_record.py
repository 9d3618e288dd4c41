import json
import multiprocessing as mp

import pytest

from edgecomp.errors import EdgecompError
from edgecomp.evaluate.record import REQUIRED_FIELDS, append_record, flatten, read_records


def make_record(**extra):
    record = {field: None for field in REQUIRED_FIELDS}
    record.update(metrics={"top1": 0.5}, latency_ms={"mean": 1.0}, config={"seed": 0}, seed=0)
    record.update(extra)
    return record


def test_append_returns_line_numbers_and_reads_back(tmp_path):
    path = tmp_path / "sub" / "records.jsonl"
    assert append_record(path, make_record(seed=1)) == 1
    assert append_record(path, make_record(seed=2)) == 2
    assert [r["seed"] for r in read_records(path)] == [1, 2]


def test_unserialisable_record_leaves_the_file_untouched(tmp_path):
    path = tmp_path / "records.jsonl"
    append_record(path, make_record())
    before = path.read_bytes()
    with pytest.raises(TypeError):
        append_record(path, make_record(artifact=object()))
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".records.jsonl.tmp*"))


def test_incomplete_record_is_refused(tmp_path):
    with pytest.raises(ValueError, match="flops"):
        append_record(tmp_path / "r.jsonl", {k: 0 for k in REQUIRED_FIELDS if k != "flops"})


def test_non_finite_numbers_become_null_and_finite_ones_stay(tmp_path):
    path = tmp_path / "records.jsonl"
    metrics = {"map": float("nan"), "map50": 0.25, "recall": float("inf"), "ar1": float("-inf"), "count": 3}
    latency = {"mean": 1.5, "passes_ms_per_image": [1.0, float("nan"), 2.0]}
    append_record(path, make_record(metrics=metrics, latency_ms=latency))
    written = json.loads(path.read_text())
    # Only the non-finite numbers are replaced, wherever they are (nested dicts, lists); the rest is written as is.
    assert written["metrics"] == {"map": None, "map50": 0.25, "recall": None, "ar1": None, "count": 3}
    assert written["latency_ms"] == {"mean": 1.5, "passes_ms_per_image": [1.0, None, 2.0]}


def _append_many(args):
    path, worker = args
    for i in range(20):
        append_record(path, make_record(seed=worker * 100 + i))


def test_parallel_writers_lose_no_line(tmp_path):
    path = tmp_path / "records.jsonl"
    with mp.get_context("fork").Pool(4) as pool:
        pool.map(_append_many, [(path, w) for w in range(4)])
    seeds = sorted(r["seed"] for r in read_records(path))
    assert seeds == sorted(w * 100 + i for w in range(4) for i in range(20))


def test_malformed_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(EdgecompError, match=r"records.jsonl:2"):
        read_records(path)


def test_flatten_skips_config_and_joins_keys():
    flat = flatten(
        {"metrics": {"top1": 0.9}, "latency_ms": {"mean": 2.0, "passes": [1, 2]}, "config": {"x": 1}, "seed": 3}
    )
    assert flat == {"metrics/top1": 0.9, "latency_ms/mean": 2.0, "seed": 3}
