"""How sure a number is: the intervals and verdicts every comparison in edgecomp reports (docs/measurement.md,
"Uncertainty", says why each interval is the one chosen).

- `ratio_interval`: a speed ratio from paired rounds (compressed / baseline ms, one ratio per round), as the
  geometric mean of the ratios with a Student's t interval on their logarithms; `faster`, `slower` or
  `same within noise` (the interval contains 1).
- `median_interval`: the distribution-free interval of a median from order statistics (one artifact's latency
  passes), or None where too few values allow one at the confidence asked.
- `mean_interval`: mean, sample std and Student's t interval over seeds (None interval for one seed).
- `paired_difference`: candidate minus baseline per seed (same seed, same baseline), its mean and t interval, and
  `better`, `worse` or `same within noise`.
- `bootstrap_interval`: a percentile bootstrap interval of a statistic over resampled items (evaluation images).

Pure functions on numbers; nothing here times or evaluates anything.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
FASTER, SLOWER, SAME = "faster", "slower", "same within noise"
BETTER, WORSE = "better", "worse"


def _t_half_width(std: float, n: int, confidence: float) -> float:
    return float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


@dataclass(frozen=True)
class RatioInterval:
    """A ratio (compressed / baseline) from `rounds` paired ratios: its geometric mean, the interval and the verdict."""

    ratio: float
    ci95: tuple[float, float]
    rounds: int
    verdict: str

    def as_record(self) -> dict:
        return {"ratio": self.ratio, "ci95": list(self.ci95), "rounds": self.rounds, "verdict": self.verdict}

    @classmethod
    def from_record(cls, paired: dict) -> RatioInterval:
        """The interval a record holds (`vs_baseline.latency`: what `as_record` wrote)."""
        return cls(paired["ratio"], (paired["ci95"][0], paired["ci95"][1]), paired["rounds"], paired["verdict"])


def ratio_interval(ratios: Sequence[float], confidence: float = CONFIDENCE) -> RatioInterval:
    """The geometric mean of per-round ratios (compressed ms / baseline ms) with a Student's t interval on their
    logarithms. A ratio is a multiplicative effect, so its logarithm is what averages symmetrically (0.8 and 1.25 are
    the same step); the t interval is exact for normal log ratios and honest with few rounds. `faster` where the
    whole interval is below 1, `slower` where it is above, `same within noise` where it holds 1."""
    logs = [math.log(r) for r in ratios]
    if len(logs) < 2 or any(not math.isfinite(x) for x in logs):
        raise ValueError(f"a ratio interval needs at least 2 finite positive ratios, got {list(ratios)}")
    mean = statistics.fmean(logs)
    half = _t_half_width(statistics.stdev(logs), len(logs), confidence)
    low, high = math.exp(mean - half), math.exp(mean + half)
    verdict = FASTER if high < 1 else SLOWER if low > 1 else SAME
    return RatioInterval(math.exp(mean), (low, high), len(logs), verdict)


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The distribution-free interval of the median of `values` (sorted x_(k) .. x_(n+1-k), the largest k whose
    binomial coverage 1 - 2 P(Bin(n, 1/2) < k) is at least `confidence`): valid for passes whose distribution is
    skewed by bursts, as a shared CPU's are. None below 6 values, where even the range covers less than 95 %."""
    data = sorted(_finite(values))
    n = len(data)
    best = None
    for k in range(1, n // 2 + 1):
        if 1 - 2 * float(stats.binom.cdf(k - 1, n, 0.5)) >= confidence:
            best = k
        else:
            break
    if best is None:
        return None
    return data[best - 1], data[n - best]


@dataclass(frozen=True)
class MeanInterval:
    """A measure over seeds: n, mean, sample std and the t interval of the mean (std and interval None for n < 2)."""

    n: int
    mean: float
    std: float | None
    ci95: tuple[float, float] | None


def mean_interval(values: Sequence[float | None], confidence: float = CONFIDENCE) -> MeanInterval | None:
    """Student's t interval of the mean of the known values (None when none is known)."""
    known = _finite(values)
    if not known:
        return None
    mean = statistics.fmean(known)
    if len(known) < 2:
        return MeanInterval(1, mean, None, None)
    std = statistics.stdev(known)
    half = _t_half_width(std, len(known), confidence)
    return MeanInterval(len(known), mean, std, (mean - half, mean + half))


@dataclass(frozen=True)
class PairedDifference:
    """Candidate minus baseline over the seeds both have: the differences' mean, its interval (None for one seed)
    and the verdict (`better` where the interval lies above 0, `worse` below, `same within noise` where it holds 0;
    `one seed` where there is no interval)."""

    n: int
    mean: float
    ci95: tuple[float, float] | None
    verdict: str


ONE_SEED = "one seed"


def paired_difference(differences: Sequence[float | None], confidence: float = CONFIDENCE) -> PairedDifference | None:
    """The verdict on per-seed differences (candidate - baseline, higher is better): each seed's difference is taken
    against the baseline of the same seed, so the seed-to-seed spread that both share drops out."""
    stat = mean_interval(differences, confidence)
    if stat is None:
        return None
    if stat.ci95 is None:
        return PairedDifference(1, stat.mean, None, ONE_SEED)
    low, high = stat.ci95
    verdict = BETTER if low > 0 else WORSE if high < 0 else SAME
    return PairedDifference(stat.n, stat.mean, stat.ci95, verdict)


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    items: int,
    resamples: int,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    estimate: float | None = None,
) -> tuple[float, float] | None:
    """The percentile bootstrap interval of `statistic(indices)` over `resamples` resamples (with replacement) of
    `items` item indices; resamples where the statistic is undefined (None or NaN) are left out. None where fewer
    than half the resamples give a value.

    With the full set's `estimate`, the bias-corrected percentile interval (Efron's BC): where the resamples lie
    mostly on one side of the estimate (COCO AP's precision envelope takes maxima of noisy values, so resampled AP
    runs high), the percentiles read are shifted by z0 = Phi^-1(share of resamples below the estimate), so that the
    interval is centred as the statistic's own bias allows; for an unbiased statistic (top-1, a mean) z0 is about 0
    and the interval the plain percentile one."""
    if items < 1 or resamples < 1:
        raise ValueError(f"a bootstrap needs items >= 1 and resamples >= 1, got {items} and {resamples}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        value = statistic(rng.integers(0, items, size=items))
        if value is not None and math.isfinite(value):
            values.append(float(value))
    if len(values) < resamples / 2:
        return None
    tail = (1 - confidence) / 2
    levels = np.array([tail, 1 - tail])
    if estimate is not None and math.isfinite(estimate):
        data = np.asarray(values)
        below = (np.count_nonzero(data < estimate) + 0.5 * np.count_nonzero(data == estimate)) / data.size
        below = min(max(below, 0.5 / data.size), 1 - 0.5 / data.size)  # a finite z0 at the extremes
        z0 = float(stats.norm.ppf(below))
        levels = stats.norm.cdf(2 * z0 + stats.norm.ppf(levels))
    low, high = np.percentile(values, 100 * levels)
    return float(low), float(high)
