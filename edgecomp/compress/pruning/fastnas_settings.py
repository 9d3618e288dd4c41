"""`compressor=fastnas`'s settings (conf/compressor/fastnas.yaml): what each key may be, checked when the compressor is
built (edgecomp.settings). What only the run can tell (a model FastNAS cannot search, a budget its search space cannot
reach) is checked by edgecomp.compress.pruning.fastnas_checks."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from edgecomp.evaluate.latency import LatencyProtocol
from edgecomp.settings import Settings, Share, list_as_tuple

# The search's latency protocol (compressor.latency_protocol): fewer images and runs than a record's, since every
# distinct subnet the search meets is deployed and timed; `rounds` pairs of sessions (the subnet, then the unpruned
# network) per timing, whose median ratio is the subnet's latency.
SEARCH_LATENCY_PROTOCOL = {"images": 16, "runs": 5, "warmup": 1, "rounds": 3}
# The least each of them may be
SEARCH_LATENCY_MINIMUM = {"images": 1, "runs": 2, "warmup": 0, "rounds": 1}


def merged_protocol(given: dict[str, int] | None) -> dict[str, int]:
    """compressor.latency_protocol with SEARCH_LATENCY_PROTOCOL's value for each key it does not give."""
    given = {} if given is None else given
    if set(given) - set(SEARCH_LATENCY_PROTOCOL):
        raise ValueError("unknown keys")
    merged = {**SEARCH_LATENCY_PROTOCOL, **given}
    if any(merged[key] < least for key, least in SEARCH_LATENCY_MINIMUM.items()):
        raise ValueError("out of range")
    return merged


def sorted_ratios(ratios: tuple[float, ...] | None) -> tuple[float, ...] | None:
    """compressor.channel_ratios, each in (0, 1] and 1 among them, sorted."""
    if ratios is None:
        return None
    if not ratios or not all(0 < ratio <= 1 for ratio in ratios) or 1 not in ratios:
        raise ValueError("out of range")
    return tuple(sorted(ratios))


def not_empty(values: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """A list that, if given, names at least one thing."""
    if values is not None and not values:
        raise ValueError("empty")
    return values


# A budget: the pruned model's FLOPs or latency as a share of the baseline's, "66%" or 0.66.
Budget = Annotated[Share, Field(gt=0, lt=1)]


class FastNASSettings(Settings):
    constraint: Literal["flops", "latency"] = Field(
        "flops",
        description="flops (the budget is compressor.flops, a share of the baseline's FLOPs) or latency "
        "(compressor.latency, a share of the baseline's latency measured on the device's runtime)",
    )
    flops: Budget = Field(
        0.66,
        description="the pruned model's FLOPs as a share of the baseline's, a percentage below 100 (e.g. 66%) or a "
        "fraction between 0 and 1 (e.g. 0.66)",
    )
    latency: Budget = Field(
        0.70,
        description="the pruned model's latency on the device as a share of the baseline's, a percentage below 100 "
        "(e.g. 70%) or a fraction between 0 and 1 (e.g. 0.7)",
    )
    latency_ranking: Literal["both", "drop_per_ms", "drop"] = Field(
        "both",
        description="drop_per_ms (narrow first what loses the least score per ms it saves, timed layer by layer on "
        "the device), drop (ModelOpt's order: the least score lost first, whatever it saves) or both (a search in "
        "each order, the finalist that scores higher wins)",
    )
    latency_protocol: Annotated[dict[str, int] | None, AfterValidator(merged_protocol)] = Field(
        SEARCH_LATENCY_PROTOCOL,
        description=f"a mapping of {', '.join(SEARCH_LATENCY_PROTOCOL)} (the latency protocol of each subnet the "
        "search times: images >= 1, runs >= 2, warmup >= 0, rounds >= 1), e.g. "
        f"{SEARCH_LATENCY_PROTOCOL}",
    )
    channel_divisor: int | None = Field(
        None,
        ge=1,
        description="a whole number >= 1, the multiple every pruned channel count is rounded to (null: the device "
        "profile's channel_divisor; ModelOpt's default is 32; 8 or 16 leave small models more to prune)",
    )
    channel_ratios: Annotated[
        tuple[float, ...] | None, BeforeValidator(list_as_tuple), AfterValidator(sorted_ratios)
    ] = Field(
        None,
        description="a list of shares of a layer's channels in (0, 1] that includes 1 (the unpruned layer), e.g. "
        "[0.5, 1.0]; null: ModelOpt's 0.05, 0.10, ..., 1",
    )
    search_layers: Annotated[tuple[str, ...] | None, BeforeValidator(list_as_tuple), AfterValidator(not_empty)] = Field(
        None,
        description="a list of module-name patterns (fnmatch, e.g. [blocks.4.*] or [network.model.1*]), or null to "
        "search every layer",
    )
    epochs: int = Field(5, ge=0, description="a whole number of fine-tuning epochs >= 0 (the report: 50)")
    lr: float = Field(0.005, gt=0, description="the fine-tune's learning rate, lr > 0 (e.g. 0.005)")
    score_metric: str | None = Field(
        None, description="a metric of the dataset's evaluator (null: the task's accuracy metric, top1 or map)"
    )
    calibration_batch_size: int | None = Field(
        None, ge=1, description="a whole number of images >= 1 (null: the training batch size)"
    )

    @property
    def search_protocol(self) -> tuple[LatencyProtocol, int]:
        """The latency protocol of one timing session of the search, and the rounds of paired sessions per timing."""
        protocol: dict[str, Any] = dict(self.latency_protocol or SEARCH_LATENCY_PROTOCOL)
        rounds = protocol.pop("rounds")
        return LatencyProtocol(**protocol), rounds

    @property
    def flops_target(self) -> str:
        """The FLOPs constraint as ModelOpt takes it: a percentage of the original model's FLOPs."""
        return f"{100 * self.flops:g}%"

    @property
    def latency_target(self) -> str:
        return f"{100 * self.latency:g}%"
