"""What a compression costs: its wall time and the memory the compression itself adds.

Memory is counted from the level just before the compression starts, not from zero: the process already holds the
interpreter, the libraries, the data and the baseline, and that level depends on what else the process did (a
baseline trained in the same run, a cached one loaded), so an absolute peak would measure the run, not the
compressor.
- `rss_added_peak_bytes`: the highest resident memory of the process and its children (data-loader workers) while
  the compression runs, sampled every `interval_s`, minus their resident memory just before it. Which children
  there are is looked up every `children_interval_s` only: psutil finds them by reading every process of the
  machine (~1 ms with 70 processes, more on a busy host), which every 10 ms would take a tenth of a core (and the
  GIL) from the compression being measured; a data-loader worker lives for an epoch.
- `cuda_added_peak_bytes` (CUDA only, else None): PyTorch's caching allocator's peak of allocated memory during the
  compression (its peak statistic reset at the start) minus what was allocated at the start. Exact, not sampled.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil
import torch


@dataclass
class Cost:
    time_s: float = 0.0
    rss_added_peak_bytes: int = 0
    cuda_added_peak_bytes: int | None = None

    def as_record(self) -> dict[str, float | int | None]:
        """The record's `compression` fields, named for what they measure."""
        return {
            "time_s": self.time_s,
            "rss_added_peak_bytes": self.rss_added_peak_bytes,
            "cuda_added_peak_bytes": self.cuda_added_peak_bytes,
        }


def _resident_bytes(process: psutil.Process, children: list[psutil.Process] | None = None) -> int:
    """This process and its children (dataloader workers; `children`: those found last, else looked up now): the
    memory the compression holds."""
    total = process.memory_info().rss
    for child in process.children(recursive=True) if children is None else children:
        try:
            total += child.memory_info().rss
        except psutil.Error:  # a worker that just exited
            pass
    return total


@contextmanager
def measure_cost(interval_s: float = 0.01, children_interval_s: float = 0.25) -> Iterator[Cost]:
    """Time the block; sample resident memory every `interval_s` on a background thread (the processes it started
    looked up every `children_interval_s`), and read the CUDA allocator's peak where there is a GPU."""
    cost = Cost()
    process = psutil.Process()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_before = torch.cuda.memory_allocated()
    before = _resident_bytes(process)
    peak = before
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        children: list[psutil.Process] = []
        looked_up = -math.inf
        while not stop.wait(interval_s):
            if time.monotonic() - looked_up >= children_interval_s:
                children, looked_up = process.children(recursive=True), time.monotonic()
            peak = max(peak, _resident_bytes(process, children))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        yield cost
    finally:
        if cuda:
            torch.cuda.synchronize()
        cost.time_s = time.perf_counter() - start
        stop.set()
        sampler.join()
        cost.rss_added_peak_bytes = max(peak, _resident_bytes(process)) - before
        if cuda:
            cost.cuda_added_peak_bytes = torch.cuda.max_memory_allocated() - cuda_before
