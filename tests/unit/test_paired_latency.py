"""Paired latency: the alternating schedule and the verdicts it gives, on a simulated clock (a host whose speed
drifts and bursts as a shared 2-core host's does), and the interval statistics against textbook values."""

import math

import numpy as np
import pytest
from scipy import stats

from edgecomp.errors import ConfigError
from edgecomp.evaluate.latency import LatencyProtocol, latency_stats
from edgecomp.evaluate.paired_latency import PairedTiming, alternate, round_order
from edgecomp.evaluate.uncertainty import (
    FASTER,
    SAME,
    SLOWER,
    median_interval,
    ratio_interval,
)


class SimulatedHost:
    """A clock for simulated timings: every pass advances it by one tick, and an artifact's pass takes its cost
    times the host's slowness at that tick (`mood`), times a log-normal jitter."""

    def __init__(self, mood, jitter: float = 0.0, seed: int = 0) -> None:
        self.mood = mood
        self.tick = 0
        self.jitter = jitter
        self.rng = np.random.default_rng(seed)

    def timer(self, cost_ms: float, passes: int = 2, slow_rounds: dict[int, float] | None = None):
        def time_round(round_index: int) -> list[float]:
            timed = []
            for _ in range(passes):
                factor = (slow_rounds or {}).get(round_index, 1.0)
                noise = math.exp(self.rng.normal(0, self.jitter)) if self.jitter else 1.0
                timed.append(cost_ms * self.mood(self.tick) * factor * noise)
                self.tick += 1
            return timed

        return time_round


def timing(passes) -> PairedTiming:
    return PairedTiming(passes=passes, warmup=1, images=8, batch_size=1)


def test_rounds_alternate_their_order():
    assert [round_order(2, r) for r in range(4)] == [[0, 1], [1, 0], [0, 1], [1, 0]]
    assert round_order(3, 1) == [2, 1, 0]
    calls = []
    alternate([lambda r: calls.append(("a", r)) or [1.0], lambda r: calls.append(("b", r)) or [1.0]], rounds=3)
    assert calls == [("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2)]


def test_a_host_slowing_down_during_the_timing_misleads_two_sequential_medians_but_not_paired_rounds():
    """The host gets 40 % slower over the timing. Timed one after the other, a file 10 % faster than the baseline
    reads slower; paired in alternating rounds, the ratio is the true 0.9 within its interval, and `faster`."""
    drift = SimulatedHost(lambda tick: 1.0 + 0.4 * tick / 20)
    baseline_passes = drift.timer(10.0, passes=10)(0)
    candidate_passes = drift.timer(9.0, passes=10)(0)  # timed after the baseline, as two medians were before
    assert np.median(candidate_passes) / np.median(baseline_passes) > 1.0  # the trap: the faster file reads slower

    drift = SimulatedHost(lambda tick: 1.0 + 0.4 * tick / 20)
    paired = timing(alternate([drift.timer(10.0), drift.timer(9.0)], rounds=5))
    ratio = paired.ratio(1, 0)
    assert ratio.verdict == FASTER
    assert ratio.ci95[0] < 0.9 < ratio.ci95[1]
    assert ratio.ratio == pytest.approx(0.9, rel=0.02)


def test_the_same_file_against_itself_is_same_within_noise_and_a_burst_does_not_make_it_slower():
    """A/A on a jittery host, with a burst that slows one side of one round by 40 %: the burst widens the interval
    instead of deciding the verdict."""
    for seed in range(10):
        host = SimulatedHost(lambda tick: 1.0, jitter=0.03, seed=seed)
        paired = timing(alternate([host.timer(10.0), host.timer(10.0, slow_rounds={2: 1.4})], rounds=5))
        ratio = paired.ratio(1, 0)
        assert ratio.verdict == SAME, (seed, ratio)
        assert ratio.ci95[0] < 1 < ratio.ci95[1]


def test_a_true_difference_is_detected_through_jitter_and_a_burst_over_a_whole_round():
    """B truly 12 % faster (a 10-15 % FLOPs step), 3 % jitter per pass, and a burst that slows both sides of one
    round by 40 % (a burst longer than a round): pairing cancels it, `faster`; the reverse pairing reads `slower`."""
    for seed in range(10):
        host = SimulatedHost(lambda tick: 1.0, jitter=0.03, seed=seed)
        burst = {3: 1.4}
        paired = timing(alternate([host.timer(10.0, slow_rounds=burst), host.timer(8.8, slow_rounds=burst)], rounds=5))
        assert paired.ratio(1, 0).verdict == FASTER, seed
        assert paired.ratio(1, 0).ci95[0] < 0.88 < paired.ratio(1, 0).ci95[1], seed
        assert paired.ratio(0, 1).verdict == SLOWER, seed


def test_a_burst_on_one_side_of_one_round_widens_the_interval_rather_than_deciding_it():
    """A burst of 40 % on the faster side of one round: a 25 % difference is still `faster`; a 12 % one gets an
    interval over twice as wide as without the burst, and may read `same within noise` (no claim), never `slower`."""
    for seed in range(10):
        host = SimulatedHost(lambda tick: 1.0, jitter=0.03, seed=seed)
        large = timing(alternate([host.timer(10.0), host.timer(7.5, slow_rounds={3: 1.4})], rounds=5)).ratio(1, 0)
        small = timing(alternate([host.timer(10.0), host.timer(8.8, slow_rounds={3: 1.4})], rounds=5)).ratio(1, 0)
        clean = timing(alternate([host.timer(10.0), host.timer(8.8)], rounds=5)).ratio(1, 0)
        assert large.verdict == FASTER and clean.verdict == FASTER, seed
        assert small.verdict in (FASTER, SAME), seed
        assert small.ci95[1] - small.ci95[0] > 2 * (clean.ci95[1] - clean.ci95[0]), seed


def test_a_sides_latency_pools_its_passes_of_every_round():
    host = SimulatedHost(lambda tick: 1.0 + 0.01 * tick)
    paired = timing(alternate([host.timer(10.0), host.timer(5.0)], rounds=5))
    latency = paired.latency(1)
    assert latency["runs"] == 10 and latency["rounds"] == 5 and len(latency["passes_ms_per_image"]) == 10
    assert latency["median"] == pytest.approx(np.median(paired.passes[1]))
    assert latency["ci95"][0] <= latency["median"] <= latency["ci95"][1]


def test_the_ratio_interval_is_students_t_on_the_log_ratios():
    ratios = [0.81, 0.84, 0.79, 0.86, 0.80]
    logs = np.log(ratios)
    low, high = stats.t.interval(0.95, len(logs) - 1, loc=logs.mean(), scale=stats.sem(logs))
    result = ratio_interval(ratios)
    assert result.ratio == pytest.approx(math.exp(logs.mean()))
    assert result.ci95 == pytest.approx((math.exp(low), math.exp(high)))
    assert result.verdict == FASTER and result.rounds == 5
    assert ratio_interval([0.95, 1.04, 0.99, 1.02]).verdict == SAME
    assert ratio_interval([1.2, 1.25, 1.22]).verdict == SLOWER
    with pytest.raises(ValueError, match="at least 2"):
        ratio_interval([0.9])


def test_the_median_interval_is_the_order_statistics_with_at_least_95_percent_coverage():
    values = [5.0, 1.0, 3.0, 2.0, 4.0, 9.0, 7.0, 6.0, 8.0, 10.0]
    # n = 10: x(2)..x(9) covers 1 - 2 * P(Bin(10, 1/2) <= 1) = 97.9 %; x(3)..x(8) only 89 %.
    assert median_interval(values) == (2.0, 9.0)
    assert 1 - 2 * stats.binom.cdf(1, 10, 0.5) >= 0.95 > 1 - 2 * stats.binom.cdf(2, 10, 0.5)
    assert median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None  # even the range covers 93.75 % only
    assert latency_stats([1.0, 2.0, 3.0])["ci95"] is None


def test_the_protocol_spreads_its_runs_over_the_rounds_and_refuses_one_round():
    assert LatencyProtocol(images=4, runs=10, rounds=5).runs_per_round == 2
    assert LatencyProtocol(images=4, runs=3, rounds=5).runs_per_round == 1
    assert LatencyProtocol(images=4, runs=11, rounds=5).runs_per_round == 3
    with pytest.raises(ConfigError, match="rounds >= 2"):
        LatencyProtocol(images=4, runs=10, rounds=1)
