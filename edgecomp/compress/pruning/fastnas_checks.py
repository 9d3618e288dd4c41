"""`compressor=fastnas`'s refusals before any work (its check()): what its settings alone cannot say, asked of the run.

A model FastNAS cannot search (UNSEARCHABLE), `search_layers` patterns that name no layer of the model, a
`score_metric` the task's evaluator does not report, and a budget below the search space's smallest subnet: its FLOPs
counted on the configured model with random weights (the space depends on the architecture alone), or its latency
timed on the device. Each costs seconds, instead of a refusal after the baseline is trained.
"""

from __future__ import annotations

import fnmatch

import torch

from edgecomp.compress.context import RunSpec
from edgecomp.compress.pruning.fastnas_settings import FastNASSettings
from edgecomp.compress.pruning.fastnas_space import (
    convert_search_space,
    divisor_for,
    smallest_share,
    unreachable_budget,
    unreachable_latency,
)
from edgecomp.config import build
from edgecomp.errors import ConfigError
from edgecomp.evaluate.evaluator import ACCURACY_METRIC
from edgecomp.models.detection.adapter import DetectorAdapter
from edgecomp.models.modelopt_artifact import ModelOptView

# Models FastNAS cannot search, by `model.name` pattern, with the reason (found by running ModelOpt 0.47 on them).
UNSEARCHABLE = {
    "densenet*": (
        "every layer of a dense block takes the concatenation of all earlier layers' outputs, and ModelOpt's tracer "
        "cannot follow channels through these chained concatenations of the same features (modelopt.torch.nas."
        "convert fails with 'Missing symbols!'), so no channel is left to search; pick a MobileNetV3 or "
        "EfficientNet classifier"
    ),
}
BUDGET_TOLERANCE = 0.005  # of the baseline's FLOPs: how far above the budget check() still lets a search space pass
# Of the budget: how far above it check() still lets the smallest subnet's latency pass. check() times a model with
# random weights once, on a machine whose other work it does not control; the search measures again and says so.
LATENCY_TOLERANCE = 0.10


def check_fastnas(options: FastNASSettings, spec: RunSpec) -> None:
    """Every refusal of the module docstring, in that order (the cheapest first)."""
    model = spec.model.name
    for pattern, reason in UNSEARCHABLE.items():
        if fnmatch.fnmatch(model, pattern):
            raise ConfigError(f"compressor=fastnas cannot prune model={model}: {reason}")
    if options.search_layers is not None:
        check_search_layers(
            options.search_layers, model, [name for name, _ in build(spec.model).named_modules() if name]
        )
    if options.score_metric is not None and options.score_metric not in spec.metrics:
        raise ConfigError(
            f"compressor.score_metric={options.score_metric}: the {spec.task} evaluator reports "
            f"{', '.join(spec.metrics)} (null: {ACCURACY_METRIC[spec.task]})"
        )
    divisor = divisor_for(options, spec.device.get("channel_divisor"))
    if options.constraint == "flops":
        check_flops_budget(options, spec, divisor)
    else:
        check_latency_budget(options, spec, divisor)


def check_search_layers(patterns: tuple[str, ...], model: str, layer_names: list[str]) -> None:
    """Every `search_layers` pattern names at least one of the model's modules: ModelOpt would silently leave a
    misspelt pattern's layers whole (or, with no pattern matching, refuse after the baseline is trained)."""
    unmatched = [pattern for pattern in patterns if not fnmatch.filter(layer_names, pattern)]
    if unmatched:
        examples = [name for name in layer_names if name.count(".") <= 2][:6]
        raise ConfigError(
            f"compressor.search_layers={list(patterns)}: no layer of model={model} matches "
            f"{', '.join(unmatched)} (module-name patterns, fnmatch, relative to the model; its layers are named like "
            f"{', '.join(examples)}, ...); null searches every layer"
        )


def check_flops_budget(options: FastNASSettings, spec: RunSpec, divisor: int) -> None:
    """The search space of the configured model holds a subnet within the FLOPs budget, and ModelOpt finds something
    to search in it: ModelOpt's own conversion and two FLOPs counts."""
    size = spec.image_size
    dummy_input = torch.zeros(1, 3, size, size)
    view = ModelOptView(build(spec.model)).eval()  # converted in eval mode, as compress() converts it
    convert_search_space(view, spec.model.name, options, divisor)
    # The smallest subnet's share by edgecomp's FLOPs count; ModelOpt's own (torchprofile, BatchNorm left out)
    # differs in the third digit, so a budget that close to the floor is left to the search, which says so too.
    share = smallest_share(view, dummy_input)
    if share > options.flops + BUDGET_TOLERANCE:
        raise ConfigError(unreachable_budget(options, spec.model.name, share, divisor))


def check_latency_budget(options: FastNASSettings, spec: RunSpec, divisor: int) -> None:
    """The search space's smallest subnet runs within the latency budget on the device: the largest and the
    smallest subnet of the configured model (random weights: a dense network's latency does not depend on them)
    deployed and timed as the search times them, on random images. Timing is noisy, so only a budget missed by more
    than LATENCY_TOLERANCE is refused here; the search measures again with the trained weights."""
    from modelopt.torch.nas.utils import sample

    from edgecomp.compress.pruning.fastnas_latency import SubnetLatency

    device = build(spec.device)
    model = build(spec.model)
    if device.runtime.runs_files and isinstance(model, DetectorAdapter) and not model.decodes_forward_outputs:
        return  # the runtime cannot deploy it at all: the job's own check says so next (pipelines.common)
    size = spec.image_size
    view = ModelOptView(model).eval()
    convert_search_space(view, spec.model.name, options, divisor)
    protocol, _ = options.search_protocol
    images = torch.rand(protocol.images, 3, size, size, generator=torch.Generator().manual_seed(0))
    latency = SubnetLatency(device, size, images, protocol)  # one round: a 10 % check
    try:
        sample(view, max)
        baseline_ms = latency(view)
        sample(view, min)
        smallest_ms = latency(view)
    finally:
        latency.close()
    if smallest_ms > options.latency * baseline_ms * (1 + LATENCY_TOLERANCE):
        raise ConfigError(
            unreachable_latency(options, spec.model.name, smallest_ms, baseline_ms, divisor, device)
            + f" (timed now with random weights, a budget missed by over {LATENCY_TOLERANCE:.0%})"
        )
