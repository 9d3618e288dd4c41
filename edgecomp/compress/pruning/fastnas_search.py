"""FastNAS's search, step by step (steps 2 and 3 of edgecomp.compress.pruning.fastnas's docstring): the calibration
batches ModelOpt re-estimates BatchNorm from, the score it keeps high, ModelOpt kept to this process under DDP, and
the steps of modelopt.torch.prune.prune(mode="fastnas") with edgecomp's two additions (a measured latency budget,
the smallest subnet when the bisection ends over budget)."""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from edgecomp.compress.context import CompressionContext
from edgecomp.compress.pruning.fastnas_settings import FastNASSettings
from edgecomp.compress.pruning.fastnas_space import (
    convert_search_space,
    smallest_share,
    unreachable_budget,
    unreachable_latency,
)
from edgecomp.errors import ConfigError
from edgecomp.evaluate.runtimes.torch_eager import TorchEagerPredictor
from edgecomp.models.modelopt_artifact import ModelOptView, report_modelopt_warnings

if TYPE_CHECKING:
    from edgecomp.compress.pruning.fastnas_latency import LatencyRankedSearcher, SubnetLatency

log = logging.getLogger("edgecomp")


class CalibrationBatches:
    """`count` batches of `batch_size` training images for ModelOpt's BatchNorm re-estimation.

    The images are the datamodule's calibration set (`calibration_images`: training images drawn by the run seed,
    prepared as for evaluation, the set PTQ calibrates on), cycled when the training split holds fewer than
    count x batch_size. Drawn by the seed alone, they are the same whatever the process did before (a baseline
    trained in the same run moves the training loader's epoch), so a resumed search scores exactly as the first.
    Iterable more than once; the images are loaded on the first pass.
    """

    def __init__(self, datamodule: Any, count: int, batch_size: int) -> None:
        self.datamodule = datamodule
        self.count = count
        self.batch_size = batch_size
        self._images: torch.Tensor | None = None

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self._images is None:
            self._images = self.datamodule.calibration_images(self.count * self.batch_size)
        images = self._images
        for batch in range(self.count):
            positions = torch.arange(batch * self.batch_size, (batch + 1) * self.batch_size) % len(images)
            yield images[positions]


class ValidationScore:
    """ModelOpt's `score_func`: `metric` of the run's evaluator on the evaluation split, for the subnet that is
    active in `view` at the time of the call (ModelOpt maximises it)."""

    def __init__(self, context: CompressionContext, metric: str) -> None:
        self.context = context
        self.metric = metric
        self.evaluations = 0

    def __call__(self, view: ModelOptView) -> float:
        # ModelOpt's patched eval(): re-estimates every BatchNorm's statistics for the active subnet from the queued
        # training batches before anything is evaluated.
        view.eval()
        context = self.context
        device = context.device
        predictor = TorchEagerPredictor(view.model, device.torch_device, torch.float32)
        metrics = context.evaluator(view.model, predictor, context.datamodule, device)
        if self.metric not in metrics:
            raise ConfigError(
                f"compressor.score_metric={self.metric}: the {context.task} evaluator reports {sorted(metrics)}"
            )
        self.evaluations += 1
        value = float(metrics[self.metric])
        return value if math.isfinite(value) else 0.0  # COCO's -1/NaN for "no such objects": nothing found


@contextlib.contextmanager
def modelopt_alone() -> Iterator[None]:
    """ModelOpt as if this process were alone. Inside a live DDP process group (trainer=ddp) ModelOpt's searcher
    would broadcast every constraint check and score from rank 0 (through CUDA tensors, and to ranks that are not
    searching); here the search is rank 0's alone, and its result is handed on by edgecomp.lit.distributed."""
    from modelopt.torch.utils import distributed as modelopt_distributed

    original = modelopt_distributed.is_initialized
    modelopt_distributed.is_initialized = lambda: False  # what every one of its distributed helpers asks first
    try:
        yield
    finally:
        modelopt_distributed.is_initialized = original


def search_subnet(
    options: FastNASSettings,
    view: ModelOptView,
    context: CompressionContext,
    score: ValidationScore,
    checkpoint: Path,
    dummy_input: torch.Tensor,
    calibration_batch_size: int,
    divisor: int,
    latency: SubnetLatency | None = None,
) -> dict[str, Any]:
    """FastNAS on `view`, in place (it ends as the exported subnet); returns the searcher's state (best subnet,
    sensitivities, the baseline's score) and, for a latency search, `latency_budget` (the unpruned network's ms
    and the budget in ms).

    The steps of modelopt.torch.prune.prune(view, mode="fastnas", ...), one by one: mtn.convert into the search
    space (channel counts multiples of `divisor`), FastNAS's searcher (BinarySearcher) on it, mtn.export of the
    chosen subnet. The budget: `flops` as a percentage of the unpruned network's FLOPs, or, with `latency` (a
    SubnetLatency, which times the active subnet on the device), `latency` as a share of the unpruned network's
    ms timed by it first, given to ModelOpt in ms, with every subnet ModelOpt checks timed by it
    (fastnas_latency.measured_latency).

    Between the search and the export, one addition: ModelOpt bisects the sensitivity threshold between the
    smallest and the largest drop of the score but never tries the largest itself, i.e. the subnet with every
    group at its smallest choice. When only that subnet (or one as small) fits the budget (a budget near the
    search space's floor, or a score that drops by the same amount whatever is pruned, as an untrained model's
    does) the bisection ends without a subnet within the budget; the smallest subnet, which ModelOpt checked
    against the budget before searching, is taken instead.
    """
    import modelopt.torch.nas as mtn
    from modelopt.torch.nas.autonas import MODELOPT_QUEUE_MAXLEN
    from modelopt.torch.nas.utils import get_subnet_config, sample, select
    from modelopt.torch.prune.fastnas import FastNASModeDescriptor

    config = {
        "data_loader": CalibrationBatches(context.datamodule, MODELOPT_QUEUE_MAXLEN, calibration_batch_size),
        "collect_func": lambda images: images,  # a batch is the forward's one argument
        "max_iter_data_loader": MODELOPT_QUEUE_MAXLEN,
        "score_func": score,
        "checkpoint": str(checkpoint),
        "verbose": False,
    }
    model_name = context.model_config.name
    budget: dict[str, float] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        convert_search_space(view, model_name, options, divisor)
        measured: contextlib.AbstractContextManager[None]
        if latency is None:
            constraints: dict[str, Any] = {"flops": options.flops_target}
            measured = contextlib.nullcontext()
        else:
            from edgecomp.compress.pruning.fastnas_latency import deployment_of, measured_latency

            sample(view, max)  # the unpruned network, timed as every candidate will be, and the timing noise
            budget = {"baseline_ms": latency.calibrate(view)}
            budget["budget_ms"] = latency.budget_ms = options.latency * budget["baseline_ms"]
            constraints = {"latency": budget["budget_ms"]}
            config["deployment"] = deployment_of(context.device)  # ModelOpt requires one for a latency budget
            measured = measured_latency(latency)
            log.info(
                "fastnas: the unpruned network runs in %.3f ms per image on device=%s; latency budget %s: %.3f ms",
                budget["baseline_ms"],
                context.device.name,
                options.latency_target,
                budget["budget_ms"],
            )
        ranked: LatencyRankedSearcher | None = None  # a latency search in edgecomp's orders (latency_ranking)
        if latency is not None and options.latency_ranking != "drop":
            from edgecomp.compress.pruning.fastnas_latency import ORDERS, LatencyRankedSearcher

            orders = ORDERS if options.latency_ranking == "both" else (options.latency_ranking,)
            searcher = ranked = LatencyRankedSearcher(latency, orders)
        else:
            searcher = FastNASModeDescriptor().search_algorithm()
        with measured:
            try:
                searcher.search(view, constraints, dummy_input, config)
            except ValueError as err:
                if "constraints can be satisfied" not in str(err):
                    raise
                reason = _unreachable(options, view, model_name, dummy_input, divisor, latency, context)
                raise ConfigError(reason) from err
            state = searcher.state_dict()
            if not state["best"].get("is_satisfied"):
                smallest = {name: min(choices) for name, choices in state["sensitivity_map"].items()}
                select(view, smallest, strict=False)
                satisfied, values = searcher.constraints_func()
                if not satisfied:
                    raise RuntimeError(
                        f"FastNAS found no subnet of model={model_name} within the {options.constraint} budget "
                        f"{constraints[options.constraint]}"
                    )
                log.info("fastnas: the bisection ended over budget; taking the search space's smallest subnet")
                state["best"] = {"config": get_subnet_config(view), "constraints": values, "is_satisfied": True}
        select(view, state["best"]["config"])
        mtn.export(view)
    report_modelopt_warnings(caught)
    if latency is not None:  # a latency search: its budget
        state["latency_budget"] = budget
        state["latency_budget"]["noise"] = latency.noise
        state["latency_budget"]["saved_ms"] = ranked.saved_ms if ranked is not None else None
        state["latency_budget"]["finalists"] = ranked.finalists if ranked is not None else None
    return state


def _unreachable(
    options: FastNASSettings,
    view: ModelOptView,
    model_name: str,
    dummy_input: torch.Tensor,
    divisor: int,
    latency: SubnetLatency | None,
    context: CompressionContext,
) -> str:
    """Why ModelOpt found no subnet within the budget (its check of the smallest subnet, before the search)."""
    from modelopt.torch.nas.utils import sample

    if latency is None:
        return unreachable_budget(options, model_name, smallest_share(view, dummy_input), divisor)
    sample(view, max)
    baseline_ms = latency(view)
    sample(view, min)
    return unreachable_latency(options, model_name, latency(view), baseline_ms, divisor, context.device)
