"""Names of the processor or GPU a measurement actually ran on."""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")  # "NVIDIA Jetson Nano Developer Kit" on a Jetson


# The CPU's fastest 8-bit dot-product instructions, best first, as /proc/cpuinfo names them: what decides whether an
# INT8 file beats FP32 on this CPU (one "AMD EPYC" has AVX2 only, another AVX-512 VNNI: same model name, INT8 gains of
# 1.8x and 3.2x on ResNet-50).
INT8_INSTRUCTIONS = (("amx_int8", "AMX"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"), ("avx2", "AVX2"))


def cpu_description() -> str:
    """The CPU's model name, how many logical CPUs this process may use and its best INT8 instructions, e.g.
    `AMD EPYC (2 logical CPUs, AVX-512 VNNI)`."""
    parts = [f"{len(os.sched_getaffinity(0))} logical CPUs", cpu_int8_instructions()]
    return f"{cpu_name()} ({', '.join(part for part in parts if part)})"


@cache
def cpu_int8_instructions(cpuinfo: Path = CPUINFO) -> str | None:
    """The best 8-bit dot-product instruction set of INT8_INSTRUCTIONS the CPU has by `cpuinfo`'s flags (Linux x86),
    else None."""
    try:
        flags = next(
            (line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines()
             if line.startswith("flags")),
            [],
        )  # fmt: skip
    except OSError:
        return None
    return next((name for flag, name in INT8_INSTRUCTIONS if flag in flags), None)


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
