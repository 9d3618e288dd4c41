"""`compressor=fastnas`: structured pruning by NVIDIA ModelOpt's FastNAS, as in the proof-of-concept report
(YOLOv8m pruned to <= 66 % of its FLOPs, fine-tuned 50 epochs, then measured).

What runs, in ModelOpt's terms (modelopt.torch.prune.prune(model, mode="fastnas", constraints, dummy_input, config),
called step by step, see FastNASPruning.search):

1. Search space. ModelOpt traces the deployable network (edgecomp.models.modelopt_artifact.ModelOptView: for a
   detector its backbone, neck and head, never the pre- or post-processing, which are not part of the trace), finds
   which layers' channel counts must change together, and lets each such group keep a share of its channels
   (`channel_ratios`, by default ModelOpt's 0.05, 0.10, ..., 1.0) rounded to a multiple of `channel_divisor`:
   ModelOpt's per-layer `channel_divisor` / `feature_divisor` rules of the "fastnas" mode, all set to this value.
   It is the search-space granularity: a runtime runs channel counts that are multiples of its blocks best (ONNX
   Runtime's NCHWc: 16 floats with AVX-512, 8 with AVX2), so it decides whether fewer FLOPs become less latency (and
   a coarse one leaves small models little to prune: YOLOv8n at 32 cannot go below ~66 % of its FLOPs). null (the
   default): the device profile's `channel_divisor`, measured by benchmarks.channel_divisor; check() and the search
   both use the resolved value, which the record gives (`channel_divisor_used`). `search_layers` limits the rules
   to the modules it names (ModelOpt's name patterns); the others keep their width.
2. BatchNorm recalibration. A narrower layer changes the statistics its BatchNorm sees, so before each candidate is
   scored ModelOpt re-estimates every BatchNorm's running statistics for the candidate (its patched `model.eval()`
   does it) from a queue of training batches that `data_loader` fills once. The queue holds exactly
   MODELOPT_QUEUE_MAXLEN (50) batches and ModelOpt re-estimates only from a full queue (with fewer it warns and
   scores with stale statistics), so the data loader here yields exactly 50 batches of `calibration_batch_size`
   training images drawn by the run seed (CalibrationBatches; cycled when the split is smaller). Each score
   therefore costs 50 forward passes on top of the evaluation.
3. Search. FastNAS's binary searcher first measures each group's sensitivity: the drop of the score when that group
   alone keeps fewer channels, for each of its choices (the score: `score_metric` on the evaluation split, by the
   run's own evaluator: COCO mAP50-95 for a detector, top-1 for a classifier, unless set). It then binary-searches
   one threshold on that drop so that the subnet keeping, in every group, the fewest channels whose drop stays
   under the threshold fits the budget: `flops` (`constraint: flops`, the default: a share of the baseline's FLOPs
   as ModelOpt counts them: torchprofile, BatchNorm excluded; the record also gives edgecomp's own count before and
   after), or `latency` (`constraint: latency`: a share of the unpruned network's latency on the device's runtime).
   ModelOpt's own latency constraint measures only three subnets, with its own ONNX Runtime client (default threads,
   random inputs, profiler on), and interpolates every other subnet's latency from its FLOPs, so as shipped it is a
   FLOPs search; edgecomp plugs its own measurement into ModelOpt's searcher instead (edgecomp.compress.
   fastnas_latency): every distinct subnet deployed by the device's runtime and timed with the latency protocol at
   the device's threads and batch size (`latency_protocol`: fewer images and runs than a record's; each timing the
   median of `rounds` pairs of sessions, the subnet's and the unpruned network's), a subnet timed within the timing
   noise of the budget timed twice more (the median decides). Under a latency budget the bisection runs over each
   choice's score drop per ms it saves (`latency_ranking: drop_per_ms`: a per-layer latency table timed on the
   device first, as NetAdapt's) or over the drop alone (`drop`, ModelOpt's order); by default (`both`) it runs in
   each order and keeps the finalist that scores higher. The record's `fastnas.latency` gives the budget and the
   unpruned network in ms, the chosen subnet's ms as the search timed it, the noise, the per-layer table and each
   order's finalist. The sensitivities are written to a search checkpoint in the run's artifacts folder after each
   group, so a killed search resumes where it stopped (the checkpoint is named after the baseline's weights: another
   baseline starts afresh).
4. The chosen subnet is exported as a plain nn.Module with fewer channels, fine-tuned for `epochs` (the report: 50)
   with the task's LightningModule and the run's optimizer at the constant `lr`, and saved with
   modelopt.torch.opt.save (`save`). `evaluate.py checkpoint=<that file>` restores it into a fresh model with
   modelopt.torch.opt.restore (edgecomp.models.checkpoint.load_model).

Models. YOLOv8 (the adapter makes Ultralytics' Concat traceable), timm classifiers (the view splits timm's
BatchNormAct2d into BatchNorm2d + activation, which ModelOpt can narrow), RetinaNet, FCOS and Faster R-CNN (the
backbone, the FPN, the RPN head and the box head's hidden width are searched; the FPN outputs that its RoI pooling
reads keep their width, see modelopt_conversion; the budget binds forward(), backbone to RPN head, which every Faster
R-CNN record's FLOPs count). Refused by check(), before any work, with the reason: DenseNet (UNSEARCHABLE).

The record gains `fastnas`: the searched subnet config (the channels each searchable layer keeps), params and FLOPs
before and after (edgecomp's counts), the search's own numbers; compress.py adds `vs_baseline`, where the latency
ratio stands next to the FLOPs ratio (the report's point: -34 % FLOPs gave -19.6 % latency on its GPU).

Where the report is silent: how the score is computed (here the task's validation metric, the ModelOpt docs'
recommendation), the fine-tune's learning rate (here the run optimizer at a constant, low `lr`, as for
prune_unstructured: the pruned network keeps its trained weights), the channel divisor (the device profile's
measured one; ModelOpt's default is 32). Two departures from ModelOpt's searcher: when its bisection ends without a
subnet within the budget (it never tries its interval's upper end), the search space's smallest subnet is taken (see
FastNASPruning.search); a latency budget is checked against measurements, never interpolated.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import math
import numbers
import re
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
from hydra.utils import get_class
from omegaconf import DictConfig

from edgecomp.compress.compressor import Compressor
from edgecomp.compress.context import CompressionContext
from edgecomp.config import build
from edgecomp.errors import ConfigError
from edgecomp.evaluate.device import DEFAULT_CHANNEL_DIVISOR, TargetDevice
from edgecomp.evaluate.evaluator import ACCURACY_METRIC
from edgecomp.evaluate.flops import count_flops, count_params
from edgecomp.evaluate.latency import LatencyProtocol
from edgecomp.evaluate.runtimes.torch_eager import TorchEagerPredictor
from edgecomp.lit import distributed
from edgecomp.models.detection.adapter import DetectorAdapter
from edgecomp.models.fingerprint import weights_fingerprint
from edgecomp.models.modelopt_artifact import (
    VIEW_PREFIX,
    ModelOptView,
    modelopt_conversion,
    report_modelopt_warnings,
    restore_view,
    save_artifact,
)

if TYPE_CHECKING:
    from edgecomp.compress.pruning.fastnas_latency import SubnetLatency

log = logging.getLogger("edgecomp")

# Models FastNAS cannot search, by `model.name` pattern, with the reason (found by running ModelOpt 0.47 on them).
UNSEARCHABLE = {
    "densenet*": (
        "every layer of a dense block takes the concatenation of all earlier layers' outputs, and ModelOpt's tracer "
        "cannot follow channels through these chained concatenations of the same features (modelopt.torch.nas."
        "convert fails with 'Missing symbols!'), so no channel is left to search; pick a MobileNetV3 or "
        "EfficientNet classifier"
    ),
}
SEARCH_CHECKPOINT = "fastnas_search-{fingerprint}.pth"
SEARCHED = (
    "fastnas_searched-{fingerprint}.pt"  # under trainer=ddp: the subnet rank 0 found, which every rank fine-tunes
)
BUDGET_TOLERANCE = 0.005  # of the baseline's FLOPs: how far above the budget check() still lets a search space pass
# Of the budget: how far above it check() still lets the smallest subnet's latency pass. check() times a model with
# random weights once, on a machine whose other work it does not control; the search measures again and says so.
LATENCY_TOLERANCE = 0.10
# What the budget binds: `flops` (ModelOpt's count) or `latency` (measured on the device's runtime).
CONSTRAINTS = ("flops", "latency")
# The search's latency protocol (compressor.latency_protocol): fewer images and runs than a record's, since every
# distinct subnet the search meets is deployed and timed; `rounds` pairs of sessions (the subnet, then the unpruned
# network) per timing, whose median ratio is the subnet's latency.
SEARCH_LATENCY_PROTOCOL = {"images": 16, "runs": 5, "warmup": 1, "rounds": 3}
# How a latency search orders the groups' choices (compressor.latency_ranking; see fastnas_latency): by score drop
# per ms saved on the device (a per-layer latency table), by score drop alone, as ModelOpt's FLOPs search does, or
# both (a bisection in each order; the finalist that scores higher wins).
LATENCY_RANKINGS = ("both", "drop_per_ms", "drop")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


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

    def __call__(self, view: nn.Module) -> float:
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


def budget_share(value: float | str, key: str = "flops", example: int = 66) -> float:
    """compressor.<key> (the pruned model's FLOPs or latency as a share of the baseline's) as a fraction: "66%" or
    0.66 are both 0.66."""
    if isinstance(value, str) and (match := _PERCENT.match(value)):
        share = float(match.group(1)) / 100
    elif _is_number(value):
        share = float(value)
    else:
        share = math.nan
    if not 0 < share < 1:
        what = "FLOPs" if key == "flops" else "latency on the device"
        raise ConfigError(
            f"compressor.{key}={value}: expected the pruned model's {what} as a share of the baseline's, a percentage "
            f"below 100 (e.g. {example}%) or a fraction between 0 and 1 (e.g. {example / 100:g})"
        )
    return share


def flops_share(flops: float | str) -> float:
    """`flops` as a fraction of the baseline's: "66%" or 0.66 are both 0.66."""
    return budget_share(flops, "flops", 66)


def search_latency_protocol(settings: Mapping[str, Any] | None) -> tuple[LatencyProtocol, int]:
    """compressor.latency_protocol (images, runs, warmup, rounds; each defaults to SEARCH_LATENCY_PROTOCOL's) as the
    LatencyProtocol of one session and the rounds of paired sessions per timing."""
    expected = (
        f"expected a mapping of {', '.join(SEARCH_LATENCY_PROTOCOL)} (the latency protocol of each subnet the search "
        f"times: images >= 1, runs >= 2, warmup >= 0, rounds >= 1), e.g. {SEARCH_LATENCY_PROTOCOL}"
    )
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping) or set(settings) - set(SEARCH_LATENCY_PROTOCOL):
        raise ConfigError(f"compressor.latency_protocol={settings}: {expected}")
    merged = {**SEARCH_LATENCY_PROTOCOL, **settings}
    if not all(_is_whole(value) for value in merged.values()) or merged["rounds"] < 1:
        raise ConfigError(f"compressor.latency_protocol={dict(settings)}: {expected}")
    rounds = merged.pop("rounds")
    try:
        return LatencyProtocol(**merged), rounds
    except ConfigError as err:
        raise ConfigError(f"compressor.latency_protocol={dict(settings)}: {expected}") from err


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


def _ratio(after: float, before: float) -> float | None:
    return after / before if before else None


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


class FastNASPruning(Compressor):
    """Search a subnet with at most `flops` of the baseline's FLOPs, or (`constraint` latency) at most `latency` of
    its latency measured on the device's runtime (ModelOpt FastNAS), then fine-tune it.

    `latency_protocol`: how the search times each subnet (images, runs, warmup, rounds; see fastnas_latency);
    `channel_divisor`: the search-space granularity (channel counts are multiples of it; null: the device profile's
    `channel_divisor`, a measurement of what its runtime runs fast); `channel_ratios`: the
    shares of its channels a layer may keep (null: ModelOpt's 0.05 steps; fewer choices, fewer scores to compute:
    the search scores every choice of every searchable layer once); `search_layers`: module-name patterns of the
    layers the search may narrow (null: all; e.g. to keep a detection head whole); `epochs` of fine-tuning
    at the constant `lr` with the run's optimizer (0: deploy the searched subnet as it is); `score_metric`: the
    evaluator's metric the search keeps (null: top1 / map); `calibration_batch_size`: images per BatchNorm
    recalibration batch (null: the training batch size; ModelOpt uses 50 such batches per candidate).
    """

    changes_architecture = True

    def __init__(
        self,
        name: str,
        flops: float | str = "66%",
        channel_divisor: int | None = None,
        channel_ratios: list[float] | None = None,
        search_layers: list[str] | None = None,
        epochs: int = 5,
        lr: float = 0.005,
        score_metric: str | None = None,
        calibration_batch_size: int | None = None,
        constraint: str = "flops",
        latency: float | str = "70%",
        latency_protocol: Mapping[str, int] | None = None,
        latency_ranking: str = "both",
    ) -> None:
        super().__init__(name)
        if constraint not in CONSTRAINTS:
            raise ConfigError(
                f"compressor.constraint={constraint}: expected flops (the budget is compressor.flops, a share of the "
                "baseline's FLOPs) or latency (compressor.latency, a share of the baseline's latency measured on the "
                "device's runtime)"
            )
        if latency_ranking not in LATENCY_RANKINGS:
            raise ConfigError(
                f"compressor.latency_ranking={latency_ranking}: expected drop_per_ms (narrow first what loses the "
                "least score per ms it saves, timed layer by layer on the device), drop (ModelOpt's order: the least "
                "score lost first, whatever it saves) or both (a search in each order, the finalist that scores "
                "higher wins)"
            )
        self.latency_ranking = latency_ranking
        self.constraint = constraint
        self.flops_share = flops_share(flops)
        self.latency_share = budget_share(latency, "latency", 70)
        self.latency_protocol, self.latency_rounds = search_latency_protocol(latency_protocol)
        if channel_divisor is not None and (not _is_whole(channel_divisor) or channel_divisor < 1):
            raise ConfigError(
                f"compressor.channel_divisor={channel_divisor}: expected a whole number >= 1, the multiple every "
                "pruned channel count is rounded to (null: the device profile's channel_divisor; ModelOpt's default is "
                "32; 8 or 16 leave small models more to prune)"
            )
        if channel_ratios is not None:
            ratios = list(channel_ratios) if _is_sequence(channel_ratios) else []
            if not ratios or not all(_is_number(r) and 0 < r <= 1 for r in ratios) or 1 not in ratios:
                raise ConfigError(
                    f"compressor.channel_ratios={channel_ratios}: expected a list of shares of a layer's channels in "
                    "(0, 1] that includes 1 (the unpruned layer), e.g. [0.5, 1.0]; null: ModelOpt's 0.05, 0.10, ..., 1"
                )
        if search_layers is not None and (
            not _is_sequence(search_layers) or not search_layers or not all(isinstance(p, str) for p in search_layers)
        ):
            raise ConfigError(
                f"compressor.search_layers={search_layers}: expected a list of module-name patterns (fnmatch, e.g. "
                "[blocks.4.*] or [network.model.1*]), or null to search every layer"
            )
        if not _is_whole(epochs) or epochs < 0:
            raise ConfigError(
                f"compressor.epochs={epochs}: expected a whole number of fine-tuning epochs >= 0 (the report: 50)"
            )
        if not _is_number(lr) or not lr > 0:
            raise ConfigError(f"compressor.lr={lr}: expected the fine-tune's learning rate, lr > 0 (e.g. 0.005)")
        if calibration_batch_size is not None and (not _is_whole(calibration_batch_size) or calibration_batch_size < 1):
            raise ConfigError(
                f"compressor.calibration_batch_size={calibration_batch_size}: expected a whole number of images >= 1 "
                "(null: the training batch size)"
            )
        self.channel_divisor = None if channel_divisor is None else int(channel_divisor)
        self.channel_ratios = None if channel_ratios is None else tuple(sorted(float(r) for r in channel_ratios))
        self.search_layers = None if search_layers is None else tuple(str(p) for p in search_layers)
        self.epochs = int(epochs)
        self.lr = float(lr)
        self.score_metric = score_metric
        self.calibration_batch_size = calibration_batch_size
        self.view: ModelOptView | None = None  # set by compress(): what save() writes
        self.result: dict[str, Any] = {}  # set by compress(): the record's `fastnas`

    @property
    def flops_target(self) -> str:
        """The FLOPs constraint as ModelOpt takes it: a percentage of the original model's FLOPs."""
        return f"{100 * self.flops_share:g}%"

    @property
    def latency_target(self) -> str:
        return f"{100 * self.latency_share:g}%"

    def divisor_for(self, device_divisor: int | None) -> int:
        """The channel divisor the search space uses: compressor.channel_divisor, or else the device profile's."""
        if self.channel_divisor is not None:
            return self.channel_divisor
        return DEFAULT_CHANNEL_DIVISOR if device_divisor is None else int(device_divisor)

    def check(self, cfg: DictConfig) -> None:
        model = cfg.model.name
        for pattern, reason in UNSEARCHABLE.items():
            if fnmatch.fnmatch(model, pattern):
                raise ConfigError(f"compressor=fastnas cannot prune model={model}: {reason}")
        if self.search_layers is not None:
            self._check_search_layers(model, [name for name, _ in build(cfg.model).named_modules() if name])
        reported = get_class(cfg.dataset.evaluator._target_).metric_names
        if self.score_metric is not None and self.score_metric not in reported:
            raise ConfigError(
                f"compressor.score_metric={self.score_metric}: the {cfg.task} evaluator reports "
                f"{', '.join(reported)} (null: {ACCURACY_METRIC[cfg.task]})"
            )
        divisor = self.divisor_for(cfg.device.get("channel_divisor"))
        if self.constraint == "flops":
            self._check_budget(cfg, divisor)
        else:
            self._check_latency_budget(cfg, divisor)

    def _check_budget(self, cfg: DictConfig, divisor: int) -> None:
        """The search space of the configured model (random weights: the space depends on the architecture alone)
        holds a subnet within the FLOPs budget, and ModelOpt finds something to search in it: ModelOpt's own
        conversion and two FLOPs counts, seconds, instead of a refusal after the baseline is trained."""
        size = int(cfg.dataset.image_size)
        dummy_input = torch.zeros(1, 3, size, size)
        view = ModelOptView(build(cfg.model)).eval()  # converted in eval mode, as compress() converts it
        self._convert(view, cfg.model.name, divisor)
        # The smallest subnet's share by edgecomp's FLOPs count; ModelOpt's own (torchprofile, BatchNorm left out)
        # differs in the third digit, so a budget that close to the floor is left to the search, which says so too.
        smallest_share = self._smallest_share(view, dummy_input)
        if smallest_share > self.flops_share + BUDGET_TOLERANCE:
            raise ConfigError(self._unreachable_budget(cfg.model.name, smallest_share, divisor))

    def _check_latency_budget(self, cfg: DictConfig, divisor: int) -> None:
        """The search space's smallest subnet runs within the latency budget on the device: the largest and the
        smallest subnet of the configured model (random weights: a dense network's latency does not depend on them)
        deployed and timed as the search times them, on random images. Seconds (two deployments), instead of a
        refusal after the baseline is trained. Timing is noisy, so only a budget missed by more than
        LATENCY_TOLERANCE is refused here; the search measures again with the trained weights."""
        from modelopt.torch.nas.utils import sample

        from edgecomp.compress.pruning.fastnas_latency import SubnetLatency

        device = build(cfg.device)
        model = build(cfg.model)
        if device.runtime.runs_files and isinstance(model, DetectorAdapter) and not model.decodes_forward_outputs:
            return  # the runtime cannot deploy it at all: the job's own check says so next (pipelines.common)
        size = int(cfg.dataset.image_size)
        view = ModelOptView(model).eval()
        self._convert(view, cfg.model.name, divisor)
        images = torch.rand(self.latency_protocol.images, 3, size, size, generator=torch.Generator().manual_seed(0))
        latency = SubnetLatency(device, size, images, self.latency_protocol)  # one round: a 10 % check
        try:
            sample(view, max)
            baseline_ms = latency(view)
            sample(view, min)
            smallest_ms = latency(view)
        finally:
            latency.close()
        if smallest_ms > self.latency_share * baseline_ms * (1 + LATENCY_TOLERANCE):
            raise ConfigError(
                self._unreachable_latency(cfg.model.name, smallest_ms, baseline_ms, divisor, device)
                + " (timed now with random weights, a budget missed by over "
                f"{LATENCY_TOLERANCE:.0%})"
            )

    def _convert(self, view: ModelOptView, model_name: str, divisor: int | None = None) -> None:
        """`view` converted in place into this compressor's FastNAS search space at channel divisor `divisor` (None:
        compressor.channel_divisor, which must then be set), or a ConfigError when ModelOpt finds nothing to search
        in the model."""
        import modelopt.torch.nas as mtn
        from modelopt.torch.opt.conversion import ApplyModeError
        from modelopt.torch.prune.pruning import PruneModeRegistry

        divisor = divisor or self.channel_divisor
        if divisor is None:
            raise RuntimeError("FastNASPruning._convert needs the channel divisor the device profile resolves")
        mode = [("fastnas", search_space_rules(divisor, self.channel_ratios, self.search_layers))]
        try:
            with modelopt_conversion(view):
                mtn.convert(view, mode, registry=PruneModeRegistry)
        except ApplyModeError as err:
            raise ConfigError(
                f"compressor=fastnas cannot prune model={model_name}: ModelOpt finds nothing to search in it "
                f"({str(err).splitlines()[0]})"
            ) from err

    def _search_space_words(self, divisor: int) -> str:
        """The search-space settings a refusal names: the divisor (and where it came from) and the ratios."""
        origin = "" if self.channel_divisor is not None else " (null: the device profile's)"
        return f"compressor.channel_divisor={divisor}{origin}" + (
            f" and compressor.channel_ratios={list(self.channel_ratios)}" if self.channel_ratios else ""
        )

    def _unreachable_budget(self, model_name: str, smallest_share: float, divisor: int) -> str:
        return (
            f"compressor.flops={self.flops_target}: model={model_name} cannot be pruned that far at "
            f"{self._search_space_words(divisor)}: its smallest subnet keeps {smallest_share:.1%} of the FLOPs; raise "
            "compressor.flops or lower compressor.channel_divisor (e.g. 16 or 8)"
        )

    def _unreachable_latency(
        self, model_name: str, smallest_ms: float, baseline_ms: float, divisor: int, device: TargetDevice
    ) -> str:
        return (
            f"compressor.latency={self.latency_target}: model={model_name} cannot be made that fast at "
            f"{self._search_space_words(divisor)}: on device={device.name} ({device.runtime.name}, "
            f"{device.threads or 'all'} threads, batch {device.batch_size}) its smallest subnet runs in "
            f"{smallest_ms:.3g} ms per image, {smallest_ms / baseline_ms:.1%} of the unpruned network's "
            f"{baseline_ms:.3g} ms; raise compressor.latency, lower compressor.channel_divisor or widen "
            "compressor.search_layers"
        )

    def _check_search_layers(self, model: str, layer_names: list[str]) -> None:
        """Every `search_layers` pattern names at least one of the model's modules: ModelOpt would silently leave a
        misspelt pattern's layers whole (or, with no pattern matching, refuse after the baseline is trained)."""
        unmatched = [pattern for pattern in self.search_layers if not fnmatch.filter(layer_names, pattern)]
        if unmatched:
            examples = [name for name in layer_names if name.count(".") <= 2][:6]
            raise ConfigError(
                f"compressor.search_layers={list(self.search_layers)}: no layer of model={model} matches "
                f"{', '.join(unmatched)} (module-name patterns, fnmatch, relative to the model; its layers are named like "
                f"{', '.join(examples)}, ...); null searches every layer"
            )

    def compress(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        size = context.image_size
        input_shape = (1, 3, size, size)
        metric = self.score_metric or ACCURACY_METRIC[context.task]
        divisor = self.divisor_for(context.device.channel_divisor)
        before = {"params": count_params(model), "flops": count_flops(model, input_shape)}
        fingerprint = weights_fingerprint(model)  # names the search's files: another baseline starts afresh
        checkpoint = context.work_dir / SEARCH_CHECKPOINT.format(fingerprint=fingerprint)
        resumed = checkpoint.exists()
        if resumed:
            log.info("fastnas: resuming the search from %s", checkpoint)
        batch_size = self.calibration_batch_size or int(context.datamodule.batch_size)
        latency = None
        if self.constraint == "latency":
            from edgecomp.compress.pruning.fastnas_latency import SubnetLatency

            # Timed on the first images of the evaluation split, the record's latency images
            images = context.datamodule.fixed_images(self.latency_protocol.images)
            latency = SubnetLatency(context.device, size, images, self.latency_protocol, self.latency_rounds)

        device = context.device.torch_device
        # Converted in eval mode: in training mode ModelOpt's trace of YOLOv8 finds fewer searchable channels (its
        # smallest subnet then keeps ~80% of YOLOv8n's FLOPs instead of ~50% at channel_divisor=16).
        view = ModelOptView(model).to(device).eval()
        score = ValidationScore(context, metric)
        start = time.perf_counter()
        dummy_input = torch.zeros(input_shape, device=device)
        searched = context.work_dir / SEARCHED.format(fingerprint=fingerprint)

        def search() -> dict[str, Any]:
            try:
                with modelopt_alone():
                    state = self.search(view, context, score, checkpoint, dummy_input, batch_size, divisor, latency)
            finally:
                if latency is not None:
                    latency.close()
            if distributed.is_distributed():
                save_artifact(view, searched)  # what every rank fine-tunes
            return state

        # trainer=ddp: the search runs in rank 0 alone (its scores and timings with the other ranks idle), which then
        # hands the state and the subnet to the others; every rank, rank 0 included, fine-tunes the subnet as saved,
        # so that all hold the same modules in the same order.
        state = distributed.on_main(search, "searching with FastNAS", share=True)
        if distributed.is_distributed():
            view = restore_view(context.training.new_model(), searched).to(device)
        search_time = time.perf_counter() - start
        view.cpu()

        start = time.perf_counter()
        if self.epochs > 0:
            view.model.train()  # Lightning keeps the modes it finds; the search left the network in eval mode
            context.training.fine_tune(context.training.task_module(view.model, self.lr), self.epochs)
            view.cpu()
        fine_tune_time = time.perf_counter() - start

        searched = state["sensitivity_map"]  # the searchable hparams, by name
        chosen = state["best"]["config"]
        constraints = state["best"].get("constraints") or {}
        after = {"params": count_params(view.model), "flops": count_flops(view.model, input_shape)}
        self.view = view
        self.result = {
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
                "target": self.flops_share if self.constraint == "flops" else None,
                # ModelOpt's own count of the chosen subnet (torchprofile, BatchNorm excluded), which the target binds
                "modelopt_after": constraints.get("flops"),
            },
            "search": {
                "constraint": self.constraint,
                "channel_divisor": divisor,
                "score_metric": metric,
                "calibration_batch_size": batch_size,
                "baseline_score": state.get("original_score"),
                "score_evaluations": score.evaluations,
                "resumed": resumed,
                "checkpoint": str(checkpoint),
                "time_s": search_time,
            },
            "fine_tune_time_s": fine_tune_time,
        }
        if latency is not None:
            budget = state["latency_budget"]
            self.result["latency"] = {
                "constraint": "latency",
                "share": self.latency_share,
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
                "ranking": self.latency_ranking,
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
        return view.model

    def search(
        self,
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
            self._convert(view, model_name, divisor)
            if latency is None:
                constraints: dict[str, Any] = {"flops": self.flops_target}
                measured = contextlib.nullcontext()
            else:
                from edgecomp.compress.pruning.fastnas_latency import deployment_of, measured_latency

                sample(view, max)  # the unpruned network, timed as every candidate will be, and the timing noise
                budget = {"baseline_ms": latency.calibrate(view)}
                budget["budget_ms"] = latency.budget_ms = self.latency_share * budget["baseline_ms"]
                constraints = {"latency": budget["budget_ms"]}
                config["deployment"] = deployment_of(context.device)  # ModelOpt requires one for a latency budget
                measured = measured_latency(latency)
                log.info(
                    "fastnas: the unpruned network runs in %.3f ms per image on device=%s; latency budget %s: %.3f ms",
                    budget["baseline_ms"],
                    context.device.name,
                    self.latency_target,
                    budget["budget_ms"],
                )
            ranked = latency is not None and self.latency_ranking != "drop"
            if ranked:
                from edgecomp.compress.pruning.fastnas_latency import ORDERS, LatencyRankedSearcher

                orders = ORDERS if self.latency_ranking == "both" else (self.latency_ranking,)
                searcher = LatencyRankedSearcher(latency, orders)
            else:
                searcher = FastNASModeDescriptor().search_algorithm()
            with measured:
                try:
                    searcher.search(view, constraints, dummy_input, config)
                except ValueError as err:
                    if "constraints can be satisfied" not in str(err):
                        raise
                    reason = self._unreachable(view, model_name, dummy_input, divisor, latency, context)
                    raise ConfigError(reason) from err
                state = searcher.state_dict()
                if not state["best"].get("is_satisfied"):
                    smallest = {name: min(choices) for name, choices in state["sensitivity_map"].items()}
                    select(view, smallest, strict=False)
                    satisfied, values = searcher.constraints_func()
                    if not satisfied:
                        raise RuntimeError(
                            f"FastNAS found no subnet of model={model_name} within the {self.constraint} budget "
                            f"{constraints[self.constraint]}"
                        )
                    log.info("fastnas: the bisection ended over budget; taking the search space's smallest subnet")
                    state["best"] = {"config": get_subnet_config(view), "constraints": values, "is_satisfied": True}
            select(view, state["best"]["config"])
            mtn.export(view)
        report_modelopt_warnings(caught)
        if budget:
            state["latency_budget"] = budget
            state["latency_budget"]["noise"] = latency.noise
            state["latency_budget"]["saved_ms"] = searcher.saved_ms if ranked else None
            state["latency_budget"]["finalists"] = searcher.finalists if ranked else None
        return state

    def _unreachable(
        self,
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
            return self._unreachable_budget(model_name, self._smallest_share(view, dummy_input), divisor)
        sample(view, max)
        baseline_ms = latency(view)
        sample(view, min)
        return self._unreachable_latency(model_name, latency(view), baseline_ms, divisor, context.device)

    @staticmethod
    def _smallest_share(view: ModelOptView, dummy_input: torch.Tensor) -> float:
        """FLOPs of the search space's smallest subnet over its largest's (the view is still a search space)."""
        from modelopt.torch.nas.utils import sample

        shape = tuple(dummy_input.shape)
        sample(view, max)
        largest = count_flops(view.model, shape)
        sample(view, min)
        return count_flops(view.model, shape) / largest

    def save(self, model: nn.Module, path: Path) -> Path:
        """modelopt.torch.opt.save of the pruned model's view: the pruning (ModelOpt state) and the weights."""
        if self.view is None or self.view.model is not model:
            raise RuntimeError("FastNASPruning.save is for the model its compress() returned")
        return save_artifact(self.view, path)

    @property
    def trains(self) -> bool:
        return self.epochs > 0  # the fine-tune

    def settings(self) -> dict[str, Any]:
        return {
            "constraint": self.constraint,
            "flops": self.flops_target,
            "latency": self.latency_target,
            "latency_ranking": self.latency_ranking,
            "latency_protocol": {
                "images": self.latency_protocol.images,
                "runs": self.latency_protocol.runs,
                "warmup": self.latency_protocol.warmup,
                "rounds": self.latency_rounds,
            },
            "channel_divisor": self.channel_divisor,  # null: the device profile's
            "channel_ratios": None if self.channel_ratios is None else list(self.channel_ratios),
            "search_layers": None if self.search_layers is None else list(self.search_layers),
            "epochs": self.epochs,
            "lr": self.lr,
            "score_metric": self.score_metric,  # null: the task's accuracy metric
            "calibration_batch_size": self.calibration_batch_size,  # null: the data's batch size
        }

    def results(self) -> dict[str, Any]:
        """The channel divisor, score metric and calibration batch size the search used (what null settings
        resolved to)."""
        if not self.result:
            return {}
        return {
            "channel_divisor_used": self.result["search"]["channel_divisor"],
            "score_metric_used": self.result["search"]["score_metric"],
            "calibration_batch_size_used": self.result["search"]["calibration_batch_size"],
        }

    def record_fields(self) -> dict[str, Any]:
        return {"fastnas": self.result} if self.result else {}


def _is_whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
