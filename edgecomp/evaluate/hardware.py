"""Names of the processor or GPU a measurement actually ran on."""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

import torch

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")  # "NVIDIA Jetson Nano Developer Kit" on a Jetson


def cpu_description() -> str:
    """The CPU's model name and how many logical CPUs this process may use."""
    return f"{cpu_name()} ({len(os.sched_getaffinity(0))} logical CPUs)"


@cache
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def gpu_name(index: int = 0) -> str:
    return torch.cuda.get_device_name(index)


def board_model(path: Path = DEVICE_TREE_MODEL) -> str | None:
    """The board's name from the device tree (embedded boards such as Jetsons), None on a PC or server."""
    try:
        return path.read_bytes().rstrip(b"\x00").decode(errors="replace").strip() or None
    except OSError:
        return None
