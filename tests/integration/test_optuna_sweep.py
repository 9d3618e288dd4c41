"""A search with Hydra's Optuna sweeper (`hparams_search=smoke_optuna`): its trials run one after another in the
entry point's process, as Hydra's basic launcher runs them, and its best trial is read from the records."""

import json

import pytest
import yaml

from tests.conftest import EAGER, read_jsonl, run_in_process


def test_an_optuna_search_runs_its_trials_and_reports_the_best_from_the_records(tmp_path, data_dir):
    proc = run_in_process(
        "compress.py",
        "-m",
        "hparams_search=smoke_optuna",
        "logger=none",
        EAGER,
        "teacher=mobilenetv3_small_100",  # a teacher of its own (the dropout makes its run another config's)
        "teacher.drop_rate=0.2",  # at the student's cost: what is searched is the distillation, not the teacher
        f"paths.results={tmp_path}",
        f"paths.data={data_dir}",
    )
    records = read_jsonl(tmp_path / "records.jsonl")
    (sweep,) = (tmp_path / "multirun").iterdir()
    assert sorted(r["sweep"]["job"] for r in records) == [0, 1] and {r["compressor"] for r in records} == {"kd"}
    # Optuna drew each trial's temperature and hard-label weight
    assert len({(r["compression"]["T"], r["compression"]["alpha"]) for r in records}) == 2
    best = json.loads((sweep / "best_trial.json").read_text())
    # The best trial by the records' top-1 (the latency budget of 100 ms is far away: no penalty)
    assert all(r["latency_ms"]["median"] < 100 for r in records)
    top = max(records, key=lambda r: r["metrics"]["top1"])
    assert best["value"] == pytest.approx(top["metrics"]["top1"])
    assert best["job"] == top["sweep"]["job"] and best["trials"] == 2
    assert f"best trial of 2 (from {tmp_path / 'records.jsonl'}): job {best['job']}" in proc.stdout
    # and Optuna, which got each trial's objective from the entry point, agrees
    optuna = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert optuna["best_value"] == pytest.approx(best["value"])
