"""The latency protocol on a predictor whose cost we control exactly (it sleeps)."""

import time

import numpy as np
import pytest
import torch

from edgecomp.errors import ConfigError
from edgecomp.evaluate.latency import LatencyProtocol, latency_stats, measure_latency
from edgecomp.evaluate.runtimes.base import Predictor


class SleepingPredictor(Predictor):
    """Each pass over the images costs `pass_costs_ms[k]` ms per image; it counts calls to know the pass."""

    def __init__(self, pass_costs_ms, calls_per_pass):
        self.pass_costs_ms = pass_costs_ms
        self.calls_per_pass = calls_per_pass
        self.calls = 0
        self.batch_sizes = []

    def prepare(self, images):
        return images

    def __call__(self, batch):
        cost = self.pass_costs_ms[self.calls // self.calls_per_pass]
        self.calls += 1
        self.batch_sizes.append(batch.shape[0])
        time.sleep(cost * batch.shape[0] / 1000)
        return batch


def test_statistics_follow_the_controlled_cost_and_drop_the_warmup():
    images = torch.zeros(8, 3, 4, 4)
    # Pass 0 is the warm-up and costs 10x more: it must not show in any statistic.
    costs = [40.0] + [4.0 + k for k in range(10)]  # timed passes: 4, 5, ..., 13 ms per image
    predictor = SleepingPredictor(costs, calls_per_pass=4)
    result = measure_latency(predictor, images, batch_size=2, protocol=LatencyProtocol(images=8, runs=10, warmup=1))

    assert predictor.calls == 11 * 4 and set(predictor.batch_sizes) == {2}
    assert result["runs"] == 10 and result["warmup"] == 1 and result["images"] == 8
    expected = np.arange(4.0, 14.0)
    measured = np.array(result["passes_ms_per_image"])
    assert len(measured) == 10
    # sleep() overshoots by a little, never undershoots
    assert np.all(measured >= expected) and np.all(measured < expected + 1.5)
    assert result["mean"] == pytest.approx(measured.mean())
    assert 8.5 <= result["mean"] < 10.0  # 8.5 + overshoot; a kept warm-up pass would add 3.6
    assert result["median"] == pytest.approx(np.median(measured))
    assert result["p90"] == pytest.approx(np.percentile(measured, 90))
    assert result["std"] == pytest.approx(measured.std(ddof=1))
    assert 2.5 < result["std"] < 3.6  # std of 4..13 is 3.03


def test_ms_per_image_divides_by_images_not_batches():
    images = torch.zeros(6, 3, 4, 4)
    predictor = SleepingPredictor([3.0] * 4, calls_per_pass=2)
    result = measure_latency(predictor, images, batch_size=3, protocol=LatencyProtocol(images=6, runs=3, warmup=1))
    assert 3.0 <= result["median"] < 4.0  # 3 ms per image whether it comes in batches of 1 or 3


def test_latency_stats_on_known_values():
    stats = latency_stats([1.0, 2.0, 3.0, 4.0, 10.0])
    assert stats["mean"] == 4.0 and stats["median"] == 3.0
    assert stats["std"] == pytest.approx(np.sqrt((9 + 4 + 1 + 0 + 36) / 4))
    assert stats["p90"] == pytest.approx(4.0 + 0.6 * 6.0)  # linear interpolation between 4 and 10


def test_protocol_rejects_nonsense():
    with pytest.raises(ConfigError, match="images=0"):
        LatencyProtocol(images=0)
    with pytest.raises(ConfigError, match="runs=1"):
        LatencyProtocol(runs=1)
