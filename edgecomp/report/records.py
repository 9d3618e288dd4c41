"""A results folder's records, as the report reads them: `DIR/records.jsonl` and every records.jsonl under it (a
sweep's jobs), each record checked to have what the report needs, errors naming the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecomp.errors import DatasetError
from edgecomp.evaluate.evaluator import ACCURACY_METRIC  # the metric a row's accuracy is, by the record's task
from edgecomp.evaluate.record import iter_records

RECORDS_FILE = "records.jsonl"


def find_record_files(folder: Path) -> list[Path]:
    """`folder/records.jsonl` and every records.jsonl below it (a sweep's jobs may write into subfolders), sorted;
    `folder` may also be one records file."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise DatasetError(f"report={folder}: no such folder (expected a results folder holding {RECORDS_FILE})")
    files = sorted(path for path in folder.rglob(RECORDS_FILE) if path.is_file())
    if not files:
        raise DatasetError(f"report={folder}: no {RECORDS_FILE} in this folder or any folder under it")
    return files


def _check_record(record: dict[str, Any], where: str) -> None:
    """What the report needs beyond a valid record (read_records checked the fields and their types)."""
    if record["task"] not in ACCURACY_METRIC:
        raise DatasetError(f"{where}: task {record['task']!r} is not one of {sorted(ACCURACY_METRIC)}")


def load_records(folder: Path) -> list[dict[str, Any]]:
    """Every record of every records.jsonl at or under `folder`, each checked to have what the report needs.

    A malformed line or record is an error naming its file and line (read_records); so is a record the report
    cannot use.
    """
    records: list[dict[str, Any]] = []
    for path in find_record_files(folder):
        for line, record in iter_records(path):
            _check_record(record, f"{path}:{line}")
            records.append(record)
    if not records:
        raise DatasetError(f"report={folder}: its {RECORDS_FILE} files hold no records")
    return records
