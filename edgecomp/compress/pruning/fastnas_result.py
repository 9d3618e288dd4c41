"""What a FastNAS run records: the record's `fastnas` field, from the search's state and the counts before and after
(edgecomp.compress.pruning.fastnas's docstring, "The record gains `fastnas`")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecomp.compress.pruning.fastnas_settings import FastNASSettings
from edgecomp.models.modelopt_artifact import VIEW_PREFIX

if TYPE_CHECKING:
    from edgecomp.compress.pruning.fastnas_latency import SubnetLatency


@dataclass
class SearchRun:
    """How the search ran: what the null settings resolved to, and what it cost."""

    channel_divisor: int
    score_metric: str
    calibration_batch_size: int
    score_evaluations: int
    resumed: bool
    checkpoint: Path
    time_s: float


def _ratio(after: float | None, before: float) -> float | None:
    return after / before if before and after is not None else None


def fastnas_record(
    options: FastNASSettings,
    state: dict[str, Any],
    counts: dict[str, dict[str, int]],
    run: SearchRun,
    fine_tune_time_s: float,
    latency: SubnetLatency | None,
) -> dict[str, Any]:
    """The record's `fastnas`: the subnet chosen (the channels each searchable layer keeps) and the unpruned
    widths, params and FLOPs `counts` before and after (edgecomp's counts), the search's own numbers, and for a
    latency search the budget and what was timed."""
    searched = state["sensitivity_map"]  # the searchable hparams, by name
    chosen = state["best"]["config"]
    constraints = state["best"].get("constraints") or {}
    before, after = counts["before"], counts["after"]
    result = {
        "subnet_config": {name.removeprefix(VIEW_PREFIX): chosen[name] for name in sorted(searched)},
        "unpruned_config": {name.removeprefix(VIEW_PREFIX): max(searched[name]) for name in sorted(searched)},
        "params": {
            "before": before["params"],
            "after": after["params"],
            "ratio": _ratio(after["params"], before["params"]),
        },
        "flops": {
            "before": before["flops"],
            "after": after["flops"],
            "ratio": _ratio(after["flops"], before["flops"]),
            "target": options.flops if options.constraint == "flops" else None,
            # ModelOpt's own count of the chosen subnet (torchprofile, BatchNorm excluded), which the target binds
            "modelopt_after": constraints.get("flops"),
        },
        "search": {
            "constraint": options.constraint,
            "channel_divisor": run.channel_divisor,
            "score_metric": run.score_metric,
            "calibration_batch_size": run.calibration_batch_size,
            "baseline_score": state.get("original_score"),
            "score_evaluations": run.score_evaluations,
            "resumed": run.resumed,
            "checkpoint": str(run.checkpoint),
            "time_s": run.time_s,
        },
        "fine_tune_time_s": fine_tune_time_s,
    }
    if latency is not None:
        result["latency"] = latency_record(options, state, latency)
    return result


def latency_record(options: FastNASSettings, state: dict[str, Any], latency: SubnetLatency) -> dict[str, Any]:
    """The record's `fastnas.latency`: the budget and the unpruned network in ms, the chosen subnet's ms as the
    search timed it, the timing noise, the per-layer table and each order's finalist."""
    searched = state["sensitivity_map"]
    chosen = state["best"]["config"]
    constraints = state["best"].get("constraints") or {}
    budget = state["latency_budget"]
    return {
        "constraint": "latency",
        "share": options.latency,
        "budget_ms": budget["budget_ms"],
        "baseline_ms": budget["baseline_ms"],
        # the chosen subnet as the search timed it (the record's latency_ms is the pipeline's own measurement)
        "subnet_ms": constraints.get("latency"),
        "subnet_share": _ratio(constraints.get("latency"), budget["baseline_ms"]),
        "subnets_measured": len(latency.measured),
        # timed again because their 95 % interval held the budget (with one pair per timing: the first
        # timing within `noise`, relative, of the budget), and of those, decided by the median at the end
        "noise": budget["noise"],
        "subnets_confirmed": latency.confirmed,
        "subnets_decided_by_point": latency.decided_by_point,
        "ranking": options.latency_ranking,
        # drop_per_ms: the ms each choice saves when its group alone takes it (the per-layer latency table)
        "saved_ms": None
        if budget["saved_ms"] is None
        else {name.removeprefix(VIEW_PREFIX): row for name, row in sorted(budget["saved_ms"].items())},
        # both: each order's least narrowed subnet within the budget, as timed and scored by the search
        "finalists": None
        if budget["finalists"] is None
        else {
            order: {
                "latency_ms": finalist["constraints"]["latency"],
                "score": finalist.get("score"),
                "chosen": finalist["config"] == chosen,
                "pruned": {
                    name.removeprefix(VIEW_PREFIX): width
                    for name, width in sorted(finalist["config"].items())
                    if name in searched and width < max(searched[name])
                },
            }
            for order, finalist in budget["finalists"].items()
        },
        "protocol": latency.describe(),
    }
