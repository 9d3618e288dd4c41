"""What a compression costs: wall time and the peak resident memory of the process while it ran."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil


@dataclass
class Cost:
    time_s: float = 0.0
    peak_mem_bytes: int = 0


def _resident_bytes(process: psutil.Process) -> int:
    """This process and its children (dataloader workers): the memory the compression holds."""
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:  # a worker that just exited
            pass
    return total


@contextmanager
def measure_cost(interval_s: float = 0.01) -> Iterator[Cost]:
    """Time the block and sample resident memory every `interval_s` on a background thread."""
    cost = Cost()
    process = psutil.Process()
    cost.peak_mem_bytes = _resident_bytes(process)
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval_s):
            cost.peak_mem_bytes = max(cost.peak_mem_bytes, _resident_bytes(process))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        yield cost
    finally:
        cost.time_s = time.perf_counter() - start
        stop.set()
        sampler.join()
        cost.peak_mem_bytes = max(cost.peak_mem_bytes, _resident_bytes(process))
