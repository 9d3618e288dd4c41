"""The compression's cost measured: its wall time and the memory a block adds, not what was held before it
(tests/e2e/test_cost.py: what compress.py records)."""

from __future__ import annotations

import time

import numpy as np
import torch

from edgecomp.compress.cost import measure_cost

MB = 10**6


def test_the_memory_a_block_adds_is_measured_and_what_it_held_before_is_not():
    already_held = np.ones(300 * MB, dtype=np.uint8)  # resident before the measurement starts
    with measure_cost() as idle:
        time.sleep(0.1)
    with measure_cost() as allocating:
        block = np.ones(200 * MB, dtype=np.uint8)
        time.sleep(0.1)
        del block
    del already_held
    assert idle.rss_added_peak_bytes < 20 * MB
    assert 195 * MB <= allocating.rss_added_peak_bytes < 230 * MB
    assert 0.1 <= allocating.time_s < 5
    assert (allocating.cuda_added_peak_bytes is None) == (not torch.cuda.is_available())
