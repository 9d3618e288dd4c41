"""Latency, per the benchmark paper's protocol (Rachmanto et al. 2024, eq. 1).

A fixed set of N images is run through the predictor `warmup + runs` times in batches of the device's batch
size. Each pass is timed as a whole (the clock read after synchronising the device) and gives
ms per image = pass time x 1000 / N. The warm-up passes are discarded; the statistics are over the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from edgecomp.errors import ConfigError
from edgecomp.evaluate.runtimes.base import Predictor


@dataclass(frozen=True)
class LatencyProtocol:
    images: int = 1000
    runs: int = 10
    warmup: int = 1

    def __post_init__(self) -> None:
        if self.images < 1 or self.runs < 2 or self.warmup < 0:
            raise ConfigError(
                f"latency needs images >= 1, runs >= 2 and warmup >= 0; got images={self.images}, "
                f"runs={self.runs}, warmup={self.warmup}"
            )


def latency_stats(ms_per_image: list[float]) -> dict[str, float]:
    """mean, sample standard deviation, median and 90th percentile of per-pass ms per image."""
    values = np.asarray(ms_per_image, dtype=np.float64)
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)),
        "median": float(np.median(values)),
        "p90": float(np.percentile(values, 90)),
    }


def measure_latency(
    predictor: Predictor, images: torch.Tensor, batch_size: int, protocol: LatencyProtocol, desc: str = "latency"
) -> dict:
    """Time `protocol.warmup + protocol.runs` passes over `images` (N, 3, H, W) in batches of `batch_size`."""
    count = images.shape[0]
    # Inputs are moved to the device before the clock starts: the network forward is what is timed.
    batches = [predictor.prepare(images[i : i + batch_size]) for i in range(0, count, batch_size)]
    predictor.synchronize()
    passes = []
    for _ in tqdm(range(protocol.warmup + protocol.runs), desc=desc, unit="pass", disable=None, leave=False):
        start = time.perf_counter()
        for batch in batches:
            predictor(batch)
        predictor.synchronize()
        passes.append((time.perf_counter() - start) * 1000.0 / count)
    timed = passes[protocol.warmup :]
    return {
        **latency_stats(timed),
        "runs": protocol.runs,
        "warmup": protocol.warmup,
        "images": count,
        "batch_size": batch_size,
        "passes_ms_per_image": timed,
    }
