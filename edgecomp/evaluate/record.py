"""The record: one JSON object per evaluated artifact, appended to `<paths.results>/records.jsonl`.

Appending is atomic: the new file (old lines + the new one) is written beside the old one, flushed to disk and
renamed over it, under an exclusive lock so that parallel sweep jobs never lose each other's lines. A run
killed at any moment leaves either the old file or the new one, never a half line.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgecomp.errors import EdgecompError

REQUIRED_FIELDS = (
    "task",
    "dataset",
    "model",
    "compressor",
    "device",
    "hardware",
    "seed",
    "metrics",
    "params",
    "flops",
    "latency_ms",
    "size_bytes",
    "gzip_bytes",
    "artifact",
    "config",
)
LATENCY_FIELDS = ("mean", "std", "median", "p90", "runs", "warmup", "images")


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: a non-finite number is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def append_record(path: str | os.PathLike, record: dict[str, Any]) -> int:
    """Append `record` as one line; returns its 1-based line number."""
    missing = [field for field in REQUIRED_FIELDS if field not in record]
    if missing:
        raise ValueError(f"record lacks {missing}")
    # Serialise before touching the file: a record that cannot be written leaves the file as it was.
    line = (json.dumps(_finite(record), allow_nan=False) + "\n").encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        old = path.read_bytes() if path.exists() else b""
        if old and not old.endswith(b"\n"):
            old += b"\n"
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with open(tmp, "wb") as out:
            out.write(old + line)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    return old.count(b"\n") + 1


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        raise EdgecompError(f"no records at {path}")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise EdgecompError(f"{path}:{number}: not a JSON record ({err.msg} at column {err.colno})") from err
    return records


def flatten(record: dict[str, Any], skip: tuple[str, ...] = ("config",)) -> dict[str, Any]:
    """`{"metrics": {"top1": 0.9}}` -> `{"metrics/top1": 0.9}`, for loggers that take flat keys."""
    flat: dict[str, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                visit(f"{prefix}/{key}" if prefix else key, inner)
        elif not isinstance(value, (list, tuple)):
            flat[prefix] = value

    for key, value in record.items():
        if key not in skip:
            visit(key, value)
    return flat
