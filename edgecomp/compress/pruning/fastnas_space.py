"""FastNAS's search space: ModelOpt's "fastnas" mode rules at the configured granularity, a model converted into it,
its smallest subnet, and what a refusal says when a budget lies below that subnet (step 1 of
edgecomp.compress.pruning.fastnas's docstring)."""

from __future__ import annotations

from typing import Any

import torch

from edgecomp.compress.pruning.fastnas_settings import FastNASSettings
from edgecomp.errors import ConfigError
from edgecomp.evaluate.device import DEFAULT_CHANNEL_DIVISOR, TargetDevice
from edgecomp.evaluate.flops import count_flops
from edgecomp.models.modelopt_artifact import VIEW_PREFIX, ModelOptView, modelopt_conversion


def search_space_rules(
    channel_divisor: int, channel_ratios: tuple[float, ...] | None = None, search_layers: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """ModelOpt's "fastnas" mode config (its per-layer-type rules) with every channel / feature divisor set to
    `channel_divisor` and, if given, every channel / feature ratio list set to `channel_ratios`; everything else
    stays ModelOpt's default. With `search_layers` (module-name patterns, relative to the model), each rule applies
    to the modules those patterns match only: ModelOpt leaves the others (rule None) at their full width."""
    from modelopt.torch.prune.fastnas import FastNASConfig

    rules = FastNASConfig().model_dump()
    for per_pattern in rules.values():
        for rule in per_pattern.values():
            for key in ("channel_divisor", "feature_divisor"):
                if rule and key in rule:
                    rule[key] = channel_divisor
            for key in ("channels_ratio", "features_ratio"):
                if rule and key in rule and channel_ratios is not None:
                    rule[key] = channel_ratios
    if search_layers is not None:
        # ModelOpt matches a rule's patterns against module names inside the view (which start with "model.") and
        # merges the matches in order: "*" -> None first, then the searched layers' own rule.
        rules = {
            layer_type: {"*": None, **{VIEW_PREFIX + pattern: per_pattern["*"] for pattern in search_layers}}
            for layer_type, per_pattern in rules.items()
        }
    return rules


def divisor_for(options: FastNASSettings, device_divisor: int | None) -> int:
    """The channel divisor the search space uses: compressor.channel_divisor, or else the device profile's."""
    if options.channel_divisor is not None:
        return options.channel_divisor
    return DEFAULT_CHANNEL_DIVISOR if device_divisor is None else int(device_divisor)


def convert_search_space(view: ModelOptView, model_name: str, options: FastNASSettings, divisor: int) -> None:
    """`view` converted in place into the FastNAS search space of `options` at channel divisor `divisor`, or a
    ConfigError when ModelOpt finds nothing to search in the model."""
    import modelopt.torch.nas as mtn
    from modelopt.torch.opt.conversion import ApplyModeError
    from modelopt.torch.prune.pruning import PruneModeRegistry

    mode = [("fastnas", search_space_rules(divisor, options.channel_ratios, options.search_layers))]
    try:
        with modelopt_conversion(view):
            mtn.convert(view, mode, registry=PruneModeRegistry)
    except ApplyModeError as err:
        raise ConfigError(
            f"compressor=fastnas cannot prune model={model_name}: ModelOpt finds nothing to search in it "
            f"({str(err).splitlines()[0]})"
        ) from err


def smallest_share(view: ModelOptView, dummy_input: torch.Tensor) -> float:
    """FLOPs of the search space's smallest subnet over its largest's (the view is still a search space)."""
    from modelopt.torch.nas.utils import sample

    shape = tuple(dummy_input.shape)
    sample(view, max)
    largest = count_flops(view.model, shape)
    sample(view, min)
    return count_flops(view.model, shape) / largest


def search_space_words(options: FastNASSettings, divisor: int) -> str:
    """The search-space settings a refusal names: the divisor (and where it came from) and the ratios."""
    origin = "" if options.channel_divisor is not None else " (null: the device profile's)"
    return f"compressor.channel_divisor={divisor}{origin}" + (
        f" and compressor.channel_ratios={list(options.channel_ratios)}" if options.channel_ratios else ""
    )


def unreachable_budget(options: FastNASSettings, model_name: str, share: float, divisor: int) -> str:
    """Why a FLOPs budget cannot be met: the smallest subnet keeps `share` of the FLOPs."""
    return (
        f"compressor.flops={options.flops_target}: model={model_name} cannot be pruned that far at "
        f"{search_space_words(options, divisor)}: its smallest subnet keeps {share:.1%} of the FLOPs; raise "
        "compressor.flops or lower compressor.channel_divisor (e.g. 16 or 8)"
    )


def unreachable_latency(
    options: FastNASSettings,
    model_name: str,
    smallest_ms: float,
    baseline_ms: float,
    divisor: int,
    device: TargetDevice,
) -> str:
    """Why a latency budget cannot be met: the smallest subnet runs in `smallest_ms` on `device`."""
    return (
        f"compressor.latency={options.latency_target}: model={model_name} cannot be made that fast at "
        f"{search_space_words(options, divisor)}: on device={device.name} ({device.runtime.name}, "
        f"{device.threads or 'all'} threads, batch {device.batch_size}) its smallest subnet runs in "
        f"{smallest_ms:.3g} ms per image, {smallest_ms / baseline_ms:.1%} of the unpruned network's "
        f"{baseline_ms:.3g} ms; raise compressor.latency, lower compressor.channel_divisor or widen "
        "compressor.search_layers"
    )
