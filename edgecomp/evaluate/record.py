"""The record: one JSON object per evaluated artifact, appended to `<paths.results>/records.jsonl`.

Every entry point makes a `Record` (one typed dataclass, whatever was evaluated) and every line is checked against
it when written and when read: a field of the wrong type or a missing one is an error naming the field (and, when
read, the file and line), not a KeyError three modules later. On disk a record is a flat JSON object: the typed
fields, then the method's own top-level fields (`extra`: a distiller's `distill`, FastNAS's `fastnas`, a recipe's
`recipe`).

Appending costs the same however long the file is: the line is serialised and checked first (a record that cannot
be written leaves the file as it was), then written at the end of the file in one write and flushed to disk, under
an exclusive lock so that parallel sweep jobs never interleave their lines. The lock file also keeps the file's
line count and size, so that the summary can name the new record's line without reading the file; a file changed
by anything else (its size no longer the one kept) is counted once again.
"""

from __future__ import annotations

import fcntl
import json
import math
import numbers
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any, TypedDict, get_type_hints

from pydantic import TypeAdapter, ValidationError

from edgecomp.errors import EdgecompError
from edgecomp.evaluate.latency import LatencyStats, PairedLatencyStats

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
LATENCY_FIELDS = tuple(LatencyStats.__annotations__)  # what a measured latency holds
# Written only where they hold something (compress.py's records; a recipe stage's; a pretrained start's weights; the
# training of a run that wrote its summary).
OMITTED_WHEN_NULL = ("baseline", "compression", "vs_baseline", "previous", "recipe", "weights", "training")


STOPPED = ("plateau", "cap", "diverged", "budget")  # why a training run stopped (edgecomp.lit.convergence)


class RecordError(EdgecompError, ValueError):
    """A record that does not have the record's fields and types."""


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 0


# What each typed field may hold (None is allowed where a record can lack the thing: a scored predictions file has
# no model, latency or size), as (check, what is expected).
_STR = (lambda v: isinstance(v, str), "a string")
_OPT_STR = (lambda v: v is None or isinstance(v, str), "a string or null")
_OPT_COUNT = (lambda v: v is None or _is_count(v), "a whole number >= 0 or null")
_OPT_NUMBER = (lambda v: v is None or _is_number(v), "a number or null")
_OPT_DICT = (lambda v: v is None or isinstance(v, dict), "an object or null")
_METRICS = (
    lambda v: isinstance(v, dict) and all(isinstance(k, str) and (x is None or _is_number(x)) for k, x in v.items()),
    "an object of metric names to numbers (or null)",
)


def _is_interval(value: Any) -> bool:
    """[low, high] with low <= high, or null (a metric without an interval)."""
    if value is None:
        return True
    return isinstance(value, list) and len(value) == 2 and all(map(_is_number, value)) and value[0] <= value[1]


_METRICS_CI95 = (
    lambda v: (
        v is None
        or (
            isinstance(v, dict)
            and ("resamples" not in v or (_is_count(v["resamples"]) and v["resamples"] >= 1))
            and all(isinstance(k, str) and _is_interval(x) for k, x in v.items() if k != "resamples")
        )
    ),
    'null or {metric: [low, high] or null, ..., "resamples": N >= 1}',
)
# Each key of latency_ms as LatencyStats declares it. Older records lack what the protocol added since (the
# interval, the batch size): a key may be missing, except the statistic every comparison uses, but one that is
# there has its declared type.
_LATENCY_KEYS = {key: TypeAdapter(hint) for key, hint in get_type_hints(PairedLatencyStats).items()}


def _is_latency(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, dict) or not _is_number(value.get("median", value.get("mean"))):
        return False
    try:
        for key, inner in value.items():
            if key in _LATENCY_KEYS:
                _LATENCY_KEYS[key].validate_python(inner)
    except ValidationError:
        return False
    return True


_LATENCY = (_is_latency, "null or an object with the median (or mean) ms per image, typed as LatencyStats")


class Measurement(TypedDict):
    """What measuring a deployed model gives (edgecomp.pipelines.measure.measure_model): the record's measured
    fields, and the deployed file (`artifact`: null for a module run as it is)."""

    artifact: str | None
    export_time_s: float | None
    params: int | None  # null for a file made elsewhere: no network to count
    flops: int | None
    input_size: list[int]
    size_bytes: int
    gzip_bytes: int
    runtime: dict[str, Any]  # what ran it: the device's description, runtime, precision, provider, threads
    metrics: Mapping[str, float | None]
    metrics_ci95: dict[str, Any] | None
    latency_ms: LatencyStats | PairedLatencyStats | None  # None until a paired timing fills it


class MeasuredSide(TypedDict):
    """One side of a comparison as a record keeps it (`baseline`, a recipe stage's `previous`): what was deployed,
    the weights it came from, and its measured fields."""

    artifact: str
    checkpoint: str
    metrics: Mapping[str, float | None]
    metrics_ci95: dict[str, Any] | None
    params: int | None
    flops: int | None
    latency_ms: LatencyStats | PairedLatencyStats | None
    size_bytes: int | None
    gzip_bytes: int | None
    runtime: dict[str, Any] | None
    export_time_s: float | None


# What a comparison keeps of a measurement (MeasuredSide's measured fields, in the record's order).
MEASURED_FIELDS = tuple(key for key in MeasuredSide.__annotations__ if key not in ("artifact", "checkpoint"))


class VsBaseline(TypedDict):
    """A compress.py record's `vs_baseline`: compressed / baseline (null where a side is unknown)."""

    params_ratio: float | None
    flops_ratio: float | None
    latency_ratio: float | None
    latency_stat: str  # "paired rounds" (the ratio of a paired timing) or the statistic both medians are
    latency: dict[str, Any] | None  # the paired ratio's interval, rounds and verdict (RatioInterval.as_record)


class StageVsBaseline(VsBaseline):
    """A recipe stage's `vs_baseline`: also its latency ratio to the stage before, from the same paired timing."""

    latency_vs_previous: dict[str, Any]  # RatioInterval.as_record


@dataclass
class Record:
    """One evaluated artifact. `extra` holds a method's own top-level fields; they may not reuse a typed name."""

    # what ran, on what
    task: str
    dataset: str
    seed: int
    config: dict[str, Any]
    artifact: str  # the deployed file (or the checkpoint, for a module run as it is; a predictions file)
    model: str | None
    compressor: str | None
    device: str | None
    hardware: str | None
    # what it measured
    metrics: Mapping[str, float | None]
    params: int | None
    flops: int | None
    latency_ms: LatencyStats | PairedLatencyStats | None
    size_bytes: int | None
    gzip_bytes: int | None
    # 95 % bootstrap intervals of metrics over the evaluation images, with the resample count: {"top1": [low, high],
    # "resamples": N} (config evaluate.bootstrap; a metric that most resamples leave undefined is null); null when
    # no bootstrap ran
    metrics_ci95: dict[str, Any] | None = None
    created: str | None = None
    edgecomp_version: str | None = None
    checkpoint: str | None = None  # the weights the artifact came from
    # where the model's training started when model.pretrained_file named a file (edgecomp.models.pretrained): the
    # file, its fingerprint, and what was loaded, re-initialised, left at init or ignored; written only then
    weights: dict[str, Any] | None = None
    # the training run the model came from (train.py's own; compress.py's baseline): epochs trained, the cap, and
    # why it stopped (`plateau`, `cap` or `diverged` when trained until converged, `budget` for a fixed budget);
    # written where the run wrote its summary (edgecomp.lit.convergence)
    training: dict[str, Any] | None = None
    input_size: list[int] | None = None
    runtime: dict[str, Any] | None = None  # what ran the artifact: name, precision, provider, threads
    export_time_s: float | None = None
    # compress.py: the baseline it measured in the same run, the compression's cost and settings, the ratios
    baseline: MeasuredSide | None = None
    compression: dict[str, Any] | None = None
    vs_baseline: VsBaseline | None = None
    # a recipe's stage: {name, stage, index, stages, key}, and the stage before it measured as `baseline` is
    previous: MeasuredSide | None = None
    recipe: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    CHECKS = {
        "task": _STR,
        "dataset": _STR,
        "seed": (lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool), "a whole number"),
        "config": (lambda v: isinstance(v, dict), "an object"),
        "artifact": _STR,
        "model": _OPT_STR,
        "compressor": _OPT_STR,
        "device": _OPT_STR,
        "hardware": _OPT_STR,
        "metrics": _METRICS,
        "metrics_ci95": _METRICS_CI95,
        "params": _OPT_COUNT,
        "flops": _OPT_NUMBER,
        "latency_ms": _LATENCY,
        "size_bytes": _OPT_COUNT,
        "gzip_bytes": _OPT_COUNT,
        "created": _OPT_STR,
        "edgecomp_version": _OPT_STR,
        "checkpoint": _OPT_STR,
        "weights": (
            lambda v: (
                v is None or (isinstance(v, dict) and {"file", "sha256", "reinitialised", "left_at_init"} <= set(v))
            ),
            "null or an object with the pretrained file, its sha256, and what was re-initialised and left at init",
        ),
        "training": (
            lambda v: v is None or (isinstance(v, dict) and _is_count(v.get("epochs")) and v.get("stopped") in STOPPED),
            f"null or an object with the epochs trained and why it stopped (one of {', '.join(STOPPED)})",
        ),
        "input_size": (
            lambda v: v is None or (isinstance(v, list) and all(_is_count(x) for x in v)),
            "a list of sizes",
        ),
        "runtime": _OPT_DICT,
        "export_time_s": _OPT_NUMBER,
        "baseline": _OPT_DICT,
        "compression": _OPT_DICT,
        "vs_baseline": _OPT_DICT,
        "previous": _OPT_DICT,
        "recipe": (
            lambda v: v is None or (isinstance(v, dict) and {"name", "stage", "index", "stages"} <= set(v)),
            "null or an object with the recipe's name, stage, index and stages",
        ),
    }

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """A RecordError naming the first field whose value is not what the record holds there."""
        for name, (check, expected) in self.CHECKS.items():
            value = getattr(self, name)
            if not check(value):
                raise RecordError(f"record field {name!r}: expected {expected}, got {value!r:.80}")
        if clashes := sorted(set(self.extra) & set(self.CHECKS)):
            raise RecordError(f"record extra fields {clashes} would replace the record's own")

    def to_json(self) -> dict[str, Any]:
        """The flat JSON object written to records.jsonl. The comparison fields only a compress.py record has (and
        `weights`, only a pretrained start's) are left out where null (a train.py record has no `baseline`, a single
        compressor's no `recipe`)."""
        typed = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "extra" and not (f.name in OMITTED_WHEN_NULL and getattr(self, f.name) is None)
        }
        return {**typed, **self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        """The record a JSON object holds; a RecordError for a missing required field or a wrong type."""
        if not isinstance(data, dict):
            raise RecordError(f"a record is a JSON object, got {type(data).__name__}")
        if missing := [name for name in REQUIRED_FIELDS if name not in data]:
            raise RecordError(f"record lacks {missing}")
        typed = {f.name for f in fields(cls)} - {"extra"}
        return cls(
            **{key: value for key, value in data.items() if key in typed},
            extra={key: value for key, value in data.items() if key not in typed},
        )


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
def _locked(path: Path) -> Iterator[IO[str]]:
    """An exclusive lock on `path` for appending; yields the lock file, which keeps "<lines> <bytes>" of `path`."""
    with open(path.with_name(path.name + ".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield lock
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _line_count(path: Path, lock: IO[str], size: int) -> int:
    """The lines of `path` (of `size` bytes) as the lock file keeps them, or counted when it keeps another size."""
    lock.seek(0)
    kept = lock.read().split()
    if len(kept) == 2 and kept[1] == str(size) and kept[0].isdigit():
        return int(kept[0])
    with open(path, "rb") as file:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))


def append_record(path: str | os.PathLike, record: Record | dict[str, Any]) -> int:
    """Append `record` (checked against Record) as one line; returns its 1-based line number."""
    data = (record if isinstance(record, Record) else Record.from_json(record)).to_json()
    # Serialise before touching the file: a record that cannot be written leaves the file as it was.
    line = (json.dumps(_finite(data), allow_nan=False) + "\n").encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path) as lock, open(path, "a+b") as file:
        size = file.seek(0, os.SEEK_END)
        lines = _line_count(path, lock, size) if size else 0
        if size and os.pread(file.fileno(), 1, size - 1) != b"\n":
            line = b"\n" + line  # a file edited by hand may lack its last newline
            lines += 1
        file.write(line)
        file.flush()
        os.fsync(file.fileno())
        lock.truncate(0)
        lock.write(f"{lines + 1} {size + len(line)}\n")
        lock.flush()
    return lines + 1


def iter_records(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every record of a records.jsonl file, each checked against Record, read once."""
    path = Path(path)
    if not path.exists():
        raise EdgecompError(f"no records at {path}")
    with open(path) as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                yield number, Record.from_json(json.loads(line)).to_json()
            except json.JSONDecodeError as err:
                raise EdgecompError(f"{path}:{number}: not a JSON record ({err.msg} at column {err.colno})") from err
            except RecordError as err:
                raise RecordError(f"{path}:{number}: {err}") from err


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of a records.jsonl file, each checked against Record, as the JSON objects they are."""
    return [record for _, record in iter_records(path)]


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
