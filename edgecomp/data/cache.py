"""Generate a dataset folder once, atomically: into a temporary folder renamed into place when complete."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

META = "meta.json"


def generate_once(folder: Path, fill: Callable[[Path], dict[str, Any]]) -> Path:
    """Return `folder`, first calling `fill(tmp)` to write its content into a temporary sibling if it is not there.

    `fill` returns the metadata written to `meta.json`, whose presence marks a complete folder. An interrupted
    generation leaves nothing behind; two processes generating the same folder both succeed (the first rename
    wins and, the generation being deterministic, the other's identical copy is dropped).
    """
    if (folder / META).exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        meta = fill(tmp)
        (tmp / META).write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / META).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
