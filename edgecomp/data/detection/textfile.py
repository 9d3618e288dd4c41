"""Line-oriented annotation files (YOLO labels, VisDrone annotations), read with errors that name the file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from edgecomp.errors import DatasetError


def numbered_lines(path: Path, kind: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped text) of every non-blank line of `path`, a `kind` ("label file", ...)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read the {kind} ({err}).") from err
    for line_number, line in enumerate(lines, start=1):
        text = line.strip()
        if text:
            yield line_number, text
