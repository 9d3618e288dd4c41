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

Three additions make the search a latency search rather than a FLOPs search with a different ruler:

- The order in which layers are narrowed (`LatencyRankedSearcher`, compressor.latency_ranking=drop_per_ms). ModelOpt's
  BinarySearcher bisects one threshold on each choice's score drop, so every budget walks the same family of subnets
  whatever each narrowing buys. Here each group is also timed narrowed alone (every other group whole): the ms it
  saves, a per-layer latency table as NetAdapt builds one, on the device's runtime (the narrowest choice timed, the
  choices between interpolated in the channels they remove). The bisection is over the score drop per ms saved: the
  subnet at a threshold narrows each group to its fewest channels whose drop per ms saved stays under it, so what
  the runtime finds cheap to cut is cut first. The table costs one timed deployment per group (22 for YOLOv8n: ~2-3
  min at 320 px on 2 cores), once per search.
- Finalists scored (compressor.latency_ranking=both): a bisection in each order, drop per ms and ModelOpt's drop,
  and each order's finalist (its least narrowed subnet within the budget) scored as it is, by the score the search
  keeps (BatchNorm re-estimated for the subnet); the higher wins. Both orders rank on estimates made one group at a
  time (a drop, a saving), which two groups narrowed together need not add up to, and the order that wins differs
  from one model and budget to the next; two scores settle it for the price of a second bisection (YOLOv8n at 320 px:
  34 subnets timed and a 571 s search, against 30 and 504 s in one order).
- Paired, noise-aware timing. Two timings of one subnet on a shared machine minutes apart differ by several percent
  (by 13 % in a benchmark run here), more than the steps between neighbouring subnets near the budget. So every
  subnet is timed paired with the unpruned network (a session of each in turn; the ratio of the pair times the
  unpruned network's calibrated ms), in `rounds` such pairs whose median ratio counts (one pair caught by a burst of
  other work on the host is outvoted: a single pair put a searched subnet at 0.71 of the unpruned network where five
  alternated rounds after the search measured 0.80). A subnet is accepted or refused by the 95 % interval of its
  latency (the t interval of its pairs' ratios, edgecomp.evaluate.uncertainty.ratio_interval), not by a point:
  while the interval holds the budget, the subnet is timed again, up to CONFIRM_TIMINGS timings in all, after which
  the median decides (the record counts those, `decided_by_point`). With one pair per timing (rounds=1) there is no
  interval until the second timing, and a first timing within the noise of the budget (`noise`: the relative spread
  of the unpruned network's timings as a subnet's are made, paired with itself, at least MIN_NOISE) is retimed.
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
from edgecomp.evaluate.uncertainty import ratio_interval
from edgecomp.models.modelopt_artifact import ModelOptView

# How often a subnet whose interval holds the budget is timed in all before the median decides, and the least
# relative noise assumed (three timings of the unpruned network can agree by chance).
CONFIRM_TIMINGS = 3
MIN_NOISE = 0.02


def subnet_key(config: dict[str, Any]) -> str:
    """One string per subnet config (hparam name -> choice): what identifies a subnet the search met."""
    return json.dumps(config, sort_keys=True, default=str)


class SubnetLatency:
    """Median ms per image of the subnet active in a FastNAS search space (a converted ModelOptView), deployed on
    `device` as a deployment of it would be and timed with `protocol` on `images` (N, 3, input_size, input_size) in
    batches of the device's batch size.

    Once `calibrate` has timed the unpruned network (its file kept for the search), every subnet is timed paired
    with it: a session of the subnet, then one of the unpruned network, one at a time, and the subnet's latency is
    its ms over the unpruned network's ms of the same pair, times the unpruned network's calibrated ms. A machine
    that slows down for a while (other work, a busy host) slows both sides of a pair, so what the search compares
    with the budget is a ratio measured in one breath, not two timings minutes apart; a burst that catches one side
    of a pair only is outvoted by the other `rounds` - 1 pairs of the timing (their median ratio counts). Each
    distinct subnet is deployed once and timed once, except near the budget: with `budget_ms` set, a subnet whose
    95 % interval (`interval_ms`, from all its pairs) holds the budget is timed again, up to CONFIRM_TIMINGS timings
    in all, and then the median decides.
    `timings` maps subnet configs to their timings (ms).
    """

    def __init__(
        self, device: TargetDevice, input_size: int, images: torch.Tensor, protocol: LatencyProtocol, rounds: int = 1
    ) -> None:
        self.device = device
        self.input_size = input_size
        self.images = images
        self.protocol = protocol
        self.rounds = rounds
        self.timings: dict[str, list[float]] = {}
        # Each subnet's paired rounds: its ms over the reference's in the same pair, one entry per pair timed.
        self.ratios: dict[str, list[float]] = {}
        self.budget_ms: float | None = None
        self.noise = MIN_NOISE
        self.unpaired_noise: float | None = None  # the relative spread of the unpruned network's unpaired sessions
        self.retimed: set[str] = set()  # subnets timed again because their interval held the budget
        self.reference_ms: float | None = None  # the unpruned network's calibrated ms, once `calibrate` has run
        self._reference: Any = None  # its deployed artifact, kept until `close`
        self._folder = tempfile.TemporaryDirectory(prefix="edgecomp-fastnas-")

    @property
    def measured(self) -> dict[str, float]:
        """Each distinct subnet timed so far: its latency in ms (the median of its timings)."""
        return {key: statistics.median(timed) for key, timed in self.timings.items()}

    @property
    def confirmed(self) -> int:
        """How many subnets were timed again because their interval held the budget."""
        return len(self.retimed)

    @staticmethod
    def _key(view: nn.Module) -> str:
        return subnet_key(get_subnet_config(view))

    def __call__(self, view: nn.Module) -> float:
        key = self._key(view)
        if key not in self.timings:
            self.timings[key] = self.measure(view, key=key)
        timed = self.timings[key]
        while len(timed) < CONFIRM_TIMINGS and self.undecided(key):
            timed += self.measure(view, key=key)
            self.retimed.add(key)
        return statistics.median(timed)

    def interval_ms(self, key: str) -> tuple[float, float] | None:
        """The 95 % interval of the subnet's latency from its paired rounds (the t interval of its ratio to the
        reference, times the reference's ms: edgecomp.evaluate.uncertainty.ratio_interval); None below 2 pairs."""
        ratios = self.ratios.get(key, [])
        if len(ratios) < 2 or self.reference_ms is None:
            return None
        low, high = ratio_interval(ratios).ci95
        return low * self.reference_ms, high * self.reference_ms

    def undecided(self, key: str) -> bool:
        """Whether the subnet's timings cannot yet tell which side of the budget it is on: its interval holds the
        budget (or, with fewer than 2 paired rounds, its ms is within `noise` of it)."""
        if self.budget_ms is None:
            return False
        interval = self.interval_ms(key)
        if interval is None:
            return self.near_budget(statistics.median(self.timings[key]))
        return interval[0] <= self.budget_ms <= interval[1]

    def near_budget(self, ms: float) -> bool:
        return self.budget_ms is not None and abs(ms - self.budget_ms) <= self.noise * self.budget_ms

    @property
    def decided_by_point(self) -> int:
        """How many subnets were still undecided after CONFIRM_TIMINGS timings: their median ms decided."""
        return sum(1 for key in self.retimed if self.undecided(key))

    def calibrate(self, view: nn.Module) -> float:
        """Time the active subnet (the unpruned network) CONFIRM_TIMINGS times, in fresh sessions of one export that
        is kept as the reference every later subnet is paired with, and returns their median, the reference's ms.
        `noise` becomes the error of a timing as the search makes one: the reference timed CONFIRM_TIMINGS times as
        if it were a subnet (paired with itself, in `rounds` pairs), the relative spread of those timings, at least
        MIN_NOISE. Not the spread of the unpaired sessions: on a busy host that is several times larger (9-18 % in
        benchmark runs here), and as the floor of the per-layer table's savings it would hide every layer's saving
        (0.05-1.3 ms of YOLOv8n's ~9.5 ms at 320 px), leaving drop_per_ms to rank by the drop alone."""
        artifact = self._deploy(view, Path(self._folder.name) / "reference")
        timed = [self._time(artifact) for _ in range(CONFIRM_TIMINGS)]
        median = statistics.median(timed)
        self.timings[self._key(view)] = timed
        self._reference, self.reference_ms = artifact, median
        paired = [self._paired(artifact) for _ in range(CONFIRM_TIMINGS)]
        self.noise = max(MIN_NOISE, (max(paired) - min(paired)) / median)
        self.unpaired_noise = (max(timed) - min(timed)) / median
        return median

    def measure(self, view: nn.Module, times: int = 1, key: str | None = None) -> list[float]:
        """Time the active subnet of `view` (which stays the search space it is): deployed once, timed `times` times.
        A timing is `rounds` fresh sessions of the runtime, one at a time, each followed by one of the reference once
        calibrated: the median of their ms (paired: of their ms over the reference's, times its calibrated ms). The
        pairs' ratios are kept under `key` (`ratios`) for the subnet's interval."""
        with tempfile.TemporaryDirectory(dir=self._folder.name) as folder:
            artifact = self._deploy(view, Path(folder))
            return [self._paired(artifact, key) for _ in range(times)]

    def _paired(self, artifact: Any, key: str | None = None) -> float:
        rounds = []
        for _ in range(self.rounds):
            ms = self._time(artifact)
            # (calibrate() sets the reference and its ms together; close() drops the reference alone)
            if self._reference is not None and self.reference_ms is not None:
                ratio = ms / self._time(self._reference)
                if key is not None:
                    self.ratios.setdefault(key, []).append(ratio)
                ms = ratio * self.reference_ms
            rounds.append(ms)
        return statistics.median(rounds)

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
            "rounds": self.rounds,
            "unpaired_noise": self.unpaired_noise,
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


def drop_ranks(drops: dict[str, dict[int, float]]) -> dict[str, dict[int, float]]:
    """ModelOpt's order as ranks: each choice's score drop; a group's widest choice ranks first (-inf)."""
    return {
        name: {choice: -float("inf") if choice == max(row) else drop for choice, drop in row.items()}
        for name, row in drops.items()
    }


# The orders a latency search may bisect (compressor.latency_ranking names one, or `both`).
ORDERS = ("drop_per_ms", "drop")


class LatencyRankedSearcher(BinarySearcher):
    """ModelOpt's FastNAS BinarySearcher bisecting, under a latency budget, one family of subnets per order in
    `orders`, and taking the best of their finalists by the search's own score.

    ModelOpt's sensitivity map (the drops; resumed from its search checkpoint) and its constraint checks are kept as
    they are. An order ranks every choice of every group: `drop_per_ms`, its score drop per ms it saves on the device
    (`latency_table`, timed by `latency`); `drop`, its score drop alone (ModelOpt's order). The subnet at a rank
    narrows each group to its fewest channels ranked at most that (`subnet_at`), and the thresholds bisected are an
    order's distinct ranks, by position, so each step halves the subnets left; an order's finalist is its least
    narrowed subnet within the budget.

    Each order's finalist rests on estimates: the drops are measured one group at a time (narrowing two together may
    cost more or less than the sum), the table one group at a time. So with several orders the finalists are scored
    as they are (ModelOpt's score function, the metric the search keeps, BatchNorm re-estimated for the subnet) and
    the higher score wins; the record lists each order's finalist (`finalists`). With one order, or finalists that
    are one subnet, nothing is scored beyond ModelOpt's sensitivity map. If no order has a subnet within the budget
    but the smallest, `best` is left unsatisfied and fastnas_search.search_subnet takes the smallest subnet (which
    ModelOpt checked before searching).
    """

    def __init__(self, latency: SubnetLatency, orders: tuple[str, ...] = ("drop_per_ms",)) -> None:
        super().__init__()
        unknown = set(orders) - set(ORDERS)
        if not orders or unknown:
            raise ValueError(f"orders: expected some of {ORDERS}, got {orders}")
        self.latency = latency
        self.orders = orders
        self.saved_ms: dict[str, dict[int, float]] = {}
        self.ranks: dict[str, dict[str, dict[int, float]]] = {}
        self.finalists: dict[str, dict[str, Any]] = {}
        self.true_score: Any = None

    def before_search(self) -> None:
        self.true_score = self.config["score_func"]  # ModelOpt's before_search puts its own proxy in its place
        super().before_search()  # the sensitivity map and ModelOpt's checks of the smallest and largest subnets
        if "drop_per_ms" in self.orders:
            choices = {name: sorted(row) for name, row in self.sensitivity_map.items()}
            sample(self.model, max)
            baseline_ms = self.latency(self.model)
            self.saved_ms = latency_table(self.model, choices, self.latency, baseline_ms)
            # A saving within the timing noise is not measured: such choices rank by their drop alone, as in `drop`
            floor_ms = self.latency.noise * baseline_ms
            self.ranks["drop_per_ms"] = drop_per_ms(self.sensitivity_map, self.saved_ms, floor_ms)
        if "drop" in self.orders:
            self.ranks["drop"] = drop_ranks(self.sensitivity_map)

    def run_search(self) -> None:
        for order in self.orders:
            finalist = self._bisect(self.ranks[order])
            if finalist is not None:
                self.finalists[order] = finalist
        if not self.finalists:
            return  # only the smallest subnet (never bisected to) fits: fastnas_search.search_subnet takes it
        if len({subnet_key(finalist["config"]) for finalist in self.finalists.values()}) > 1:
            for finalist in self.finalists.values():
                select(self.model, finalist["config"])
                finalist["score"] = float(self.true_score(self.model))
        best = max(self.finalists.values(), key=lambda finalist: finalist.get("score", 0.0))
        self.best = {**best, "is_satisfied": True, "metric": best.get("score", 0.0)}

    def _bisect(self, ranks: dict[str, dict[int, float]]) -> dict[str, Any] | None:
        """The least narrowed subnet of the order `ranks` within the budget, but for the order's last (every group at
        its fewest channels): {config, constraints} (None if none but the last fits)."""
        thresholds = sorted({rank for row in ranks.values() for rank in row.values() if rank > -float("inf")})
        low, high = 0, len(thresholds) - 1
        finalist = None
        while low < high:
            position = (low + high) // 2
            select(self.model, subnet_at(ranks, thresholds[position]), strict=False)
            satisfied, values = self.constraints_func()
            if satisfied:
                high, finalist = position, {"config": get_subnet_config(self.model), "constraints": values}
            else:
                low = position + 1
        return finalist

    def after_search(self) -> None:
        if self.best.get("is_satisfied"):
            super().after_search()


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
