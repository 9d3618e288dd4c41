"""A search's objective, read from a record (edgecomp.tracking.sweep.Objective)."""

import pytest

from edgecomp.errors import ConfigError
from edgecomp.tracking.sweep import Objective

RECORD = {"metrics": {"top1": 0.8, "map": None}, "latency_ms": {"median": 12.0}}


def test_the_metric_alone_without_a_budget():
    assert Objective("metrics.top1").value(RECORD) == 0.8


def test_a_trial_over_the_latency_budget_loses_the_penalty_times_its_relative_excess():
    # 12 ms against a 10 ms budget: 20 % over; penalty 0.5 -> 0.8 - 0.1
    assert Objective("metrics.top1", latency_budget_ms=10, latency_penalty=0.5).value(RECORD) == pytest.approx(0.7)
    # within the budget: nothing
    assert Objective("metrics.top1", latency_budget_ms=15).value(RECORD) == 0.8
    # a minimised metric is pushed up instead
    assert Objective("latency_ms.median", direction="minimize", latency_budget_ms=10).value(RECORD) == pytest.approx(
        12.2
    )


def test_latency_as_a_second_objective():
    assert Objective("metrics.top1", latency_as_objective=True).value(RECORD) == (0.8, 12.0)


def test_a_metric_the_record_lacks_is_named_with_the_ones_it_has():
    with pytest.raises(ConfigError, match=r"objective.metric=metrics.map: the record has None.*\['map', 'top1'\]"):
        Objective("metrics.map").value(RECORD)
    with pytest.raises(ConfigError, match="objective.direction=up"):
        Objective("metrics.top1", direction="up")


def test_better_follows_the_direction():
    assert Objective("metrics.top1").better(0.9, 0.8)
    assert Objective("latency_ms.median", direction="minimize").better(8, 9)
