"""evaluate.py report=DIR through the command line: the table printed and the report's files written, and the W&B run
it logs the table and the plot to (tests/unit/test_report.py: the table, its CSV and plot, and bad input)."""

import json

from edgecomp.evaluate.record import append_record
from edgecomp.pipelines.report import PARETO_PNG, TABLE_CSV, TABLE_MD
from edgecomp.report.table_format import CSV_COLUMNS
from tests.conftest import run_cli
from tests.helpers.records import sweep_records
from tests.helpers.wandb_log import read_run


def test_cli_prints_the_table_and_writes_the_report(tmp_path):
    results = tmp_path / "results"
    for record in sweep_records():
        append_record(results / "records.jsonl", record)
    proc = run_cli("evaluate.py", f"report={results}", "logger=none", f"paths.results={tmp_path / 'run'}")
    assert "82.00 ± 2.83" in proc.stdout and "prune_unstructured sparsity=0.25" in proc.stdout
    assert {path.name for path in (results / "report").iterdir()} == {TABLE_MD, TABLE_CSV, PARETO_PNG}


def test_wandb_gets_the_table_and_the_plot(tmp_path):
    results = tmp_path / "results"
    for record in sweep_records():
        append_record(results / "records.jsonl", record)
    run_cli("evaluate.py", f"report={results}", "logger=wandb", f"paths.results={tmp_path / 'run'}")
    (run_folder,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    (run_file,) = run_folder.glob("*.wandb")
    run = read_run(run_file)
    assert (run["name"], run["job_type"]) == ("report-results", "report")
    (table_file,) = run_folder.rglob("*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == list(CSV_COLUMNS) and len(table["data"]) == 8
    assert list(run_folder.rglob("*.png")), "the Pareto plot is logged as an image"
