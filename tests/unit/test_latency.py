"""The latency protocol on a predictor whose cost we control exactly: a simulated clock, no sleeping.

The predictor models a device that queues work (as a GPU does): each call adds its cost to a queue, and the clock
moves only when `synchronize()` waits for the queue; `prepare()` costs time too, which the protocol must leave out.
The clock is the latency module's own `time.perf_counter`, replaced for the test, so every number is exact and
nothing depends on how busy the machine running the tests is.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from edgecomp.errors import ConfigError
from edgecomp.evaluate.latency import LatencyProtocol, latency_stats, measure_latency
from edgecomp.evaluate.runtimes import runtime as runtime_module
from edgecomp.evaluate.runtimes.runtime import Predictor

PREPARE_S = 1.0  # what moving a batch to the device costs: far more than any pass, so it would show if timed


class SimulatedClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def perf_counter(self) -> float:
        return self.now_s


@pytest.fixture
def clock(monkeypatch):
    simulated = SimulatedClock()
    # the host's clock, read by the default Predictor.time_passes (a board's predictor reads the board's)
    monkeypatch.setattr(runtime_module, "time", SimpleNamespace(perf_counter=simulated.perf_counter))
    return simulated


class QueuedPredictor(Predictor):
    """Pass k costs `pass_costs_ms[k]` ms per image, queued by each call and paid when `synchronize()` waits; the
    predictor counts calls to know the pass."""

    def __init__(self, clock: SimulatedClock, pass_costs_ms, calls_per_pass) -> None:
        self.clock = clock
        self.pass_costs_ms = pass_costs_ms
        self.calls_per_pass = calls_per_pass
        self.calls = 0
        self.batch_sizes = []
        self.queued_ms = 0.0

    def prepare(self, images):
        self.clock.now_s += PREPARE_S
        return images

    def __call__(self, batch):
        self.queued_ms += self.pass_costs_ms[self.calls // self.calls_per_pass] * batch.shape[0]
        self.calls += 1
        self.batch_sizes.append(batch.shape[0])
        return batch

    def synchronize(self) -> None:
        self.clock.now_s += self.queued_ms / 1000
        self.queued_ms = 0.0


def test_statistics_follow_the_controlled_cost_and_drop_the_warmup(clock):
    images = torch.zeros(8, 3, 4, 4)
    # Pass 0 is the warm-up and costs 10x more: it must not show in any statistic.
    costs = [40.0] + [4.0 + k for k in range(10)]  # timed passes: 4, 5, ..., 13 ms per image
    predictor = QueuedPredictor(clock, costs, calls_per_pass=4)
    result = measure_latency(predictor, images, batch_size=2, protocol=LatencyProtocol(images=8, runs=10, warmup=1))

    assert predictor.calls == 11 * 4 and set(predictor.batch_sizes) == {2}
    assert predictor.queued_ms == 0.0  # the last pass was waited for too
    assert result["runs"] == 10 and result["warmup"] == 1 and result["images"] == 8 and result["batch_size"] == 2
    # Exactly the timed passes' costs, in order: no warm-up pass, no prepare() time, no work left in the queue.
    assert result["passes_ms_per_image"] == pytest.approx(np.arange(4.0, 14.0), abs=1e-6)
    # The statistics of 4, 5, ..., 13, worked out by hand.
    assert result["mean"] == pytest.approx(8.5, abs=1e-6)  # a kept warm-up pass would make it 11.4
    assert result["median"] == pytest.approx(8.5, abs=1e-6)
    assert result["p90"] == pytest.approx(12.1, abs=1e-6)  # rank 0.9 x 9 = 8.1: 12 + 0.1 x (13 - 12)
    assert result["std"] == pytest.approx(np.sqrt(82.5 / 9), abs=1e-6)  # squared deviations sum to 82.5


def test_ms_per_image_divides_by_images_not_batches(clock):
    images = torch.zeros(6, 3, 4, 4)
    for batch_size, calls_per_pass in ((3, 2), (1, 6)):
        predictor = QueuedPredictor(clock, [3.0] * 4, calls_per_pass=calls_per_pass)
        protocol = LatencyProtocol(images=6, runs=3, warmup=1)
        result = measure_latency(predictor, images, batch_size=batch_size, protocol=protocol)
        assert set(predictor.batch_sizes) == {batch_size}
        # 3 ms per image whether it comes in batches of 1 or 3
        assert result["passes_ms_per_image"] == pytest.approx([3.0, 3.0, 3.0], abs=1e-6), batch_size
        assert result["median"] == pytest.approx(3.0, abs=1e-6)


def test_a_batch_size_that_does_not_divide_the_images_still_times_every_image_once(clock):
    images = torch.zeros(5, 3, 4, 4)
    predictor = QueuedPredictor(clock, [2.0] * 3, calls_per_pass=3)
    result = measure_latency(predictor, images, batch_size=2, protocol=LatencyProtocol(images=5, runs=2, warmup=1))
    assert predictor.batch_sizes == [2, 2, 1] * 3
    assert result["passes_ms_per_image"] == pytest.approx([2.0, 2.0], abs=1e-6)


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
