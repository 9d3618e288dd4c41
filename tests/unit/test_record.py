import json
import multiprocessing as mp

import pytest

from edgecomp.errors import EdgecompError
from edgecomp.evaluate.record import REQUIRED_FIELDS, Record, RecordError, append_record, flatten, read_records


def make_record(**extra):
    record = {field: None for field in REQUIRED_FIELDS}
    record.update(
        task="classification",
        dataset="synthetic_cls",
        artifact="model.pt",
        metrics={"top1": 0.5},
        latency_ms={"mean": 1.0},
        config={"seed": 0},
        seed=0,
    )
    record.update(extra)
    return record


def test_append_returns_line_numbers_and_reads_back(tmp_path):
    path = tmp_path / "sub" / "records.jsonl"
    assert append_record(path, make_record(seed=1)) == 1
    assert append_record(path, make_record(seed=2)) == 2
    assert [r["seed"] for r in read_records(path)] == [1, 2]


def test_append_writes_only_the_new_line_and_counts_lines_without_reading_the_file(tmp_path, monkeypatch):
    path = tmp_path / "records.jsonl"
    for seed in range(3):
        append_record(path, make_record(seed=seed))
    inode, before = path.stat().st_ino, path.read_bytes()
    # The line number comes from the lock file's count: reading the records file would fail here.
    real_open = open

    def open_without_reading(file, mode="r", *args, **kwargs):
        if str(file) == str(path) and "r" in mode and "+" not in mode:
            raise AssertionError(f"append_record read {file}")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", open_without_reading)
    assert append_record(path, make_record(seed=3)) == 4
    monkeypatch.undo()
    after = path.read_bytes()
    assert path.stat().st_ino == inode and after.startswith(before)  # appended in place, nothing rewritten
    assert json.loads(after[len(before) :])["seed"] == 3


def test_line_numbers_stay_right_when_the_file_is_changed_by_something_else(tmp_path):
    path = tmp_path / "records.jsonl"
    append_record(path, make_record(seed=0))
    # edited by hand: two records and no final newline
    path.write_text(path.read_text() + "\n" + json.dumps(make_record(seed=1)))
    assert append_record(path, make_record(seed=2)) == 4  # the blank line counts: it is line 2
    assert [r["seed"] for r in read_records(path)] == [0, 1, 2]
    assert json.loads(path.read_text().splitlines()[3])["seed"] == 2


def test_unserialisable_record_leaves_the_file_untouched(tmp_path):
    path = tmp_path / "records.jsonl"
    append_record(path, make_record())
    before = path.read_bytes()
    with pytest.raises(TypeError):
        append_record(path, make_record(distill={"teacher": object()}))  # a method's field JSON cannot hold
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".records.jsonl.tmp*"))


def test_incomplete_record_is_refused(tmp_path):
    with pytest.raises(RecordError, match="flops"):
        append_record(tmp_path / "r.jsonl", {k: v for k, v in make_record().items() if k != "flops"})
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("seed", "0", "a whole number"),
        ("params", -1, "a whole number >= 0"),
        ("metrics", {"top1": "high"}, "metric names to numbers"),
        ("latency_ms", {"runs": 10}, "median"),
        ("task", None, "a string"),
    ],
)
def test_a_field_of_the_wrong_type_is_refused_on_write_naming_the_field(tmp_path, field, value, expected):
    with pytest.raises(RecordError, match=rf"record field '{field}': expected .*{expected}"):
        append_record(tmp_path / "r.jsonl", make_record(**{field: value}))
    assert not (tmp_path / "r.jsonl").exists()


def test_a_bad_line_is_refused_on_read_naming_the_file_line_and_field(tmp_path):
    path = tmp_path / "records.jsonl"
    append_record(path, make_record())
    bad = {**make_record(), "size_bytes": 1.5}
    path.write_text(path.read_text() + json.dumps(bad) + "\n")
    with pytest.raises(RecordError, match=r"records.jsonl:2: record field 'size_bytes'"):
        read_records(path)


def test_a_methods_own_fields_round_trip_but_may_not_replace_a_typed_one(tmp_path):
    path = tmp_path / "records.jsonl"
    append_record(path, make_record(distill={"method": "scalekd"}))
    assert read_records(path)[0]["distill"] == {"method": "scalekd"}
    record = Record.from_json(make_record())
    record.extra = {"metrics": {}}
    with pytest.raises(RecordError, match="replace"):
        record.validate()


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
    path.write_text(json.dumps(make_record()) + '\n{"a": \n')
    with pytest.raises(EdgecompError, match=r"records.jsonl:2"):
        read_records(path)


def test_flatten_skips_config_and_joins_keys():
    flat = flatten(
        {"metrics": {"top1": 0.9}, "latency_ms": {"mean": 2.0, "passes": [1, 2]}, "config": {"x": 1}, "seed": 3}
    )
    assert flat == {"metrics/top1": 0.9, "latency_ms/mean": 2.0, "seed": 3}
