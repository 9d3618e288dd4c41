"""Size of a deployable artifact on disk, and after gzip (zeroed weights shrink only once compressed)."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import torch
import torch.nn as nn


def gzip_size(data: bytes) -> int:
    # mtime=0: the same bytes always give the same gzip size.
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def file_sizes(path: str | os.PathLike) -> tuple[int, int]:
    data = Path(path).read_bytes()
    return len(data), gzip_size(data)


def weights_bytes(model: nn.Module) -> bytes:
    """The bytes of the deployable weights file: the state_dict alone, as torch.save writes it."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def save_weights(model: nn.Module, path: str | os.PathLike) -> tuple[int, int]:
    """Write the deployable weights file (no optimiser state, loadable with weights_only=True); its sizes."""
    data = weights_bytes(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return len(data), gzip_size(data)
