"""FastNAS under a latency budget: every candidate subnet deployed and timed as edgecomp deploys and times a model.

ModelOpt's searcher takes `constraints={"latency": ms}` with a `deployment` (e.g. {"runtime": "ORT", "accelerator":
"CPU"}), but as shipped (modelopt.torch.nas.algorithms.ConstraintsFunc, ModelOpt 0.47) it measures only three subnets,
the smallest, the centroid and the largest, through its own deployment client, and interpolates every other subnet's
latency from its FLOPs (ConstraintInterpolator, `fast_eval`): a FLOPs search rescaled. Its ONNX Runtime client also
runs with ORT's default threads, random inputs and ORT's profiler on, not as edgecomp measures a deployment.

Here ModelOpt's own plug-in point (MODULE_TYPE_TO_CONSTRAINTS_FUNC: the constraints functor per module type) gets,
for the duration of one search (`measured_latency`), a functor whose `latency` is measured, never interpolated, for
every distinct subnet (`SubnetLatency`, cached by the subnet's config: the bisection revisits subnets): the active
subnet of a deep copy of the search space exported to a plain module (modelopt.torch.nas.export), deployed by the
target device's runtime (`Runtime.deploy`: on device=cpu an FP32 ONNX file run by ONNX Runtime with every graph
optimisation) and timed by the latency protocol (measure_latency) at the device's threads and batch size, on fixed
images. What the searcher compares with the budget is that median ms per image.

Two additions make the search a latency search rather than a FLOPs search with a different ruler:

- The order in which layers are narrowed (`LatencyRankedSearcher`, compressor.latency_ranking=drop_per_ms). ModelOpt's
  BinarySearcher bisects one threshold on each choice's score drop, so every budget walks the same family of subnets
  whatever each narrowing buys. Here each group is also timed narrowed alone (every other group whole): the ms it
  saves, a per-layer latency table as NetAdapt builds one, on the device's runtime (the narrowest choice timed, the
  choices between interpolated in the channels they remove). The bisection is over the score drop per ms saved: the
  subnet at a threshold narrows each group to its fewest channels whose drop per ms saved stays under it, so what
  the runtime finds cheap to cut is cut first. The table costs one timed deployment per group (22 for YOLOv8n: ~2-3
  min at 320 px on 2 cores), once per search.
- Paired, noise-aware timing. Two timings of one subnet on a shared machine minutes apart differ by several percent
  (by 13 % in a benchmark run here), more than the steps between neighbouring subnets near the budget. So every
  subnet is timed paired with the unpruned network (a session of each in turn; the ratio of the pair times the
  unpruned network's calibrated ms), and a subnet within the noise of the budget (`noise`: the relative spread of
  the unpruned network's repeated timings, at least MIN_NOISE) is timed CONFIRM_TIMINGS times in all; the median
  decides.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import modelopt.torch.nas as mtn
import torch
import torch.nn as nn
from modelopt.torch.nas.algorithms import MODULE_TYPE_TO_CONSTRAINTS_FUNC, ConstraintsFunc
from modelopt.torch.nas.utils import get_subnet_config, sample, select
from modelopt.torch.prune.fastnas import BinarySearcher
from tqdm.auto import tqdm

from edgecomp.evaluate.artifact import ExportedModel
from edgecomp.evaluate.device import TargetDevice
from edgecomp.evaluate.latency import LatencyProtocol, measure_latency
from edgecomp.models.modelopt_artifact import ModelOptView

# How often a subnet timed within the noise of the budget is timed in all before the median decides, and the least
# relative noise assumed (three timings of the unpruned network can agree by chance).
CONFIRM_TIMINGS = 3
MIN_NOISE = 0.02


class SubnetLatency:
    """Median ms per image of the subnet active in a FastNAS search space (a converted ModelOptView), deployed on
    `device` as a deployment of it would be and timed with `protocol` on `images` (N, 3, input_size, input_size) in
    batches of the device's batch size.

    Once `calibrate` has timed the unpruned network (its file kept for the search), every subnet is timed paired
    with it: a session of the subnet, then one of the unpruned network, one at a time, and the subnet's latency is
    its ms over the unpruned network's ms of the same pair, times the unpruned network's calibrated ms. A machine
    that slows down for a while (other work, a busy host) slows both sides of a pair, so what the search compares
    with the budget is a ratio measured in one breath, not two timings minutes apart. Each distinct subnet is
    deployed once and timed once, except near the budget: with `budget_ms` set, a subnet whose latency is within
    `noise` (relative) of it is timed CONFIRM_TIMINGS times in all and the median decides. `timings` maps subnet
    configs to their timings (ms).
    """

    def __init__(self, device: TargetDevice, input_size: int, images: torch.Tensor, protocol: LatencyProtocol) -> None:
        self.device = device
        self.input_size = input_size
        self.images = images
        self.protocol = protocol
        self.timings: dict[str, list[float]] = {}
        self.budget_ms: float | None = None
        self.noise = MIN_NOISE
        self.retimed: set[str] = set()  # subnets timed again because they were timed within the noise of the budget
        self.reference_ms: float | None = None  # the unpruned network's calibrated ms, once `calibrate` has run
        self._reference: Any = None  # its deployed artifact, kept until `close`
        self._folder = tempfile.TemporaryDirectory(prefix="edgecomp-fastnas-")

    @property
    def measured(self) -> dict[str, float]:
        """Each distinct subnet timed so far: its latency in ms (the median of its timings)."""
        return {key: statistics.median(timed) for key, timed in self.timings.items()}

    @property
    def confirmed(self) -> int:
        """How many subnets were timed again because their first timing was within the noise of the budget."""
        return len(self.retimed)

    @staticmethod
    def _key(view: nn.Module) -> str:
        return json.dumps(get_subnet_config(view), sort_keys=True, default=str)

    def __call__(self, view: nn.Module) -> float:
        key = self._key(view)
        if key not in self.timings:
            self.timings[key] = self.measure(view)
        timed = self.timings[key]
        if len(timed) < CONFIRM_TIMINGS and self.near_budget(statistics.median(timed)):
            timed += self.measure(view, CONFIRM_TIMINGS - len(timed))
            self.retimed.add(key)
        return statistics.median(timed)

    def near_budget(self, ms: float) -> bool:
        return self.budget_ms is not None and abs(ms - self.budget_ms) <= self.noise * self.budget_ms

    def calibrate(self, view: nn.Module) -> float:
        """Time the active subnet (the unpruned network) CONFIRM_TIMINGS times, in fresh sessions of one export that
        is kept as the reference every later subnet is paired with; `noise` becomes the relative spread of those
        timings (at least MIN_NOISE). Returns their median, the reference's ms."""
        artifact = self._deploy(view, Path(self._folder.name) / "reference")
        timed = [self._time(artifact) for _ in range(CONFIRM_TIMINGS)]
        median = statistics.median(timed)
        self.timings[self._key(view)] = timed
        self.noise = max(MIN_NOISE, (max(timed) - min(timed)) / median)
        self._reference, self.reference_ms = artifact, median
        return median

    def measure(self, view: nn.Module, times: int = 1) -> list[float]:
        """Time the active subnet of `view` (which stays the search space it is): deployed once, timed `times` times,
        each in a fresh session of the runtime, one at a time (each paired with the reference, once calibrated)."""
        with tempfile.TemporaryDirectory(dir=self._folder.name) as folder:
            artifact = self._deploy(view, Path(folder))
            timings = []
            for _ in range(times):
                ms = self._time(artifact)
                if self._reference is not None:
                    ms *= self.reference_ms / self._time(self._reference)
                timings.append(ms)
        return timings

    def _deploy(self, view: nn.Module, folder: Path) -> Any:
        subnet = copy.deepcopy(view)
        mtn.export(subnet)  # a plain module with the active subnet's channels, as the searched model is deployed
        deployed = self.device.runtime.deploy(subnet.model, self.input_size, folder)
        return deployed.path if isinstance(deployed, ExportedModel) else deployed

    def _time(self, artifact: Any) -> float:
        device = self.device
        with device.pinned_threads():
            predictor = device.runtime.load(artifact, device)
            timed = measure_latency(predictor, self.images, device.batch_size, self.protocol, "fastnas latency")
        del predictor  # an idle ONNX Runtime session's threads would take the cores from the next one timed
        return timed["median"]

    def close(self) -> None:
        """Remove the kept reference file (later timings, if any, are unpaired)."""
        self._reference = None
        self._folder.cleanup()

    def describe(self) -> dict[str, Any]:
        """How the search timed each subnet: the protocol, and the device settings it ran under."""
        return {
            "images": int(self.images.shape[0]),
            "runs": self.protocol.runs,
            "warmup": self.protocol.warmup,
            "batch_size": self.device.batch_size,
            "threads": self.device.threads,
            "runtime": self.device.runtime.name,
            "paired_with_unpruned": self.reference_ms is not None,
        }


def latency_table(
    view: nn.Module, choices: dict[str, list[int]], latency: SubnetLatency, baseline_ms: float
) -> dict[str, dict[int, float]]:
    """The ms each choice of each searchable group saves on the device when that group alone takes it (every other
    group at its largest choice; `view` is left so): the group's narrowest choice is timed (`baseline_ms` minus its
    latency, at least 0) and the choices between are interpolated linearly in the channels they remove, as latency
    is close to linear in a layer's width between the runtime's channel blocks. One timed deployment per group."""
    sample(view, max)
    table: dict[str, dict[int, float]] = {}
    for name, values in tqdm(choices.items(), desc="fastnas latency table", unit="layer", disable=None, leave=False):
        widest, narrowest = max(values), min(values)
        select(view, {name: narrowest}, strict=False)
        saved = max(0.0, baseline_ms - latency(view))
        select(view, {name: widest}, strict=False)
        span = widest - narrowest
        table[name] = {c: saved * (widest - c) / span if span else 0.0 for c in sorted(values)}
    return table


def drop_per_ms(
    drops: dict[str, dict[int, float]], saved_ms: dict[str, dict[int, float]], floor_ms: float
) -> dict[str, dict[int, float]]:
    """Each choice's score drop per ms it saves (`saved_ms` below `floor_ms` counts as `floor_ms`: a narrowing
    that buys no measurable time ranks behind every one that does, unless it costs no score either); a group's
    widest choice ranks first (-inf)."""
    ranks: dict[str, dict[int, float]] = {}
    for name, row in drops.items():
        widest = max(row)
        ranks[name] = {
            choice: -float("inf") if choice == widest else max(drop, 0.0) / max(saved_ms[name][choice], floor_ms)
            for choice, drop in row.items()
        }
    return ranks


def subnet_at(ranks: dict[str, dict[int, float]], threshold: float) -> dict[str, int]:
    """The subnet at `threshold`: each group at its fewest channels whose rank is at most the threshold. A higher
    threshold admits more choices per group, so the subnets shrink monotonically as it rises."""
    return {name: min(choice for choice, rank in row.items() if rank <= threshold) for name, row in ranks.items()}


class LatencyRankedSearcher(BinarySearcher):
    """ModelOpt's FastNAS BinarySearcher with the bisection over each choice's score drop per ms it saves on the
    device (`latency_table`, timed by `latency`) instead of over the score drop alone. ModelOpt's sensitivity map
    (the drops; resumed from its search checkpoint) and its constraint checks are kept as they are; the thresholds
    bisected are the distinct ranks, by position, so each step halves the subnets left, and the least narrowed
    subnet within the budget is the best (`score_func` scores a subnet by how early it comes)."""

    def __init__(self, latency: SubnetLatency) -> None:
        super().__init__()
        self.latency = latency
        self.saved_ms: dict[str, dict[int, float]] = {}
        self.ranks: dict[str, dict[int, float]] = {}
        self.thresholds: list[float] = []
        self.low = self.high = self.position = 0

    def before_search(self) -> None:
        super().before_search()  # the sensitivity map and ModelOpt's checks of the smallest and largest subnets
        choices = {name: sorted(row) for name, row in self.sensitivity_map.items()}
        sample(self.model, max)
        baseline_ms = self.latency(self.model)
        self.saved_ms = latency_table(self.model, choices, self.latency, baseline_ms)
        # A saving within the timing noise is not measured: such choices rank by their drop alone, as ModelOpt's do
        self.ranks = drop_per_ms(self.sensitivity_map, self.saved_ms, self.latency.noise * baseline_ms)
        self.thresholds = sorted({rank for row in self.ranks.values() for rank in row.values() if rank > -float("inf")})
        self.low, self.high = 0, len(self.thresholds) - 1
        self.config["score_func"] = lambda _model: -float(self.position)

    def before_step(self) -> None:
        self.position = (self.low + self.high) // 2

    def sample(self) -> dict[str, Any]:
        select(self.model, subnet_at(self.ranks, self.thresholds[self.position]), strict=False)
        return {"config": get_subnet_config(self.model)}

    def after_step(self) -> None:
        if self.candidate["is_satisfied"]:
            self.high = self.position
        else:
            self.low = self.position + 1

    def early_stop(self) -> bool:
        # The last threshold (every group at its fewest channels) was checked by ModelOpt before the search; when the
        # bisection ends there untried, FastNASPruning.search takes that smallest subnet.
        return self.low >= self.high


def deployment_of(device: TargetDevice) -> dict[str, str]:
    """ModelOpt's `deployment` for a latency search (it must not be None when latency is a constraint): edgecomp's
    device, for the search's own records; the measurement itself is SubnetLatency's, not ModelOpt's client's."""
    return {
        "runtime": device.runtime.name,
        "accelerator": device.accelerator,
        "precision": device.precision,
        "batch_size": str(device.batch_size),
        "threads": str(device.threads),
    }


class MeasuredLatencyConstraints(ConstraintsFunc):
    """ModelOpt's constraints functor with `latency` measured by `measure` (a SubnetLatency) for every subnet it is
    asked about, instead of interpolated from FLOPs between three measured subnets."""

    def __init__(self, *args: Any, measure: SubnetLatency, **kwargs: Any) -> None:
        self.measure = measure  # set first: the base class may evaluate a constraint while it sets its limits
        super().__init__(*args, **kwargs)

    def _get_true_latency(self, _: dict[str, float] | None = None) -> float:
        return self.measure(self.model)

    def _get_latency(self, precomputed: dict[str, float] | None = None) -> float:
        return self._get_true_latency(precomputed)


@contextlib.contextmanager
def measured_latency(measure: SubnetLatency) -> Iterator[None]:
    """While open, ModelOpt's searchers constrain the latency of a ModelOptView with `measure`'s measurements
    (MeasuredLatencyConstraints); afterwards ModelOpt's process-wide table is as it was found."""
    found = dict(MODULE_TYPE_TO_CONSTRAINTS_FUNC)
    # First in the table: ModelOpt takes the first entry whose type the model is an instance of.
    MODULE_TYPE_TO_CONSTRAINTS_FUNC.clear()
    MODULE_TYPE_TO_CONSTRAINTS_FUNC[ModelOptView] = functools.partial(MeasuredLatencyConstraints, measure=measure)
    MODULE_TYPE_TO_CONSTRAINTS_FUNC.update({key: value for key, value in found.items() if key is not ModelOptView})
    try:
        yield
    finally:
        MODULE_TYPE_TO_CONSTRAINTS_FUNC.clear()
        MODULE_TYPE_TO_CONSTRAINTS_FUNC.update(found)
