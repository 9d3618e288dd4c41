"""`compressor=fastnas`: structured pruning by NVIDIA ModelOpt's FastNAS, as in the proof-of-concept report
(YOLOv8m pruned to <= 66 % of its FLOPs, fine-tuned 50 epochs, then measured).

What runs, in ModelOpt's terms (modelopt.torch.prune.prune(model, mode="fastnas", constraints, dummy_input, config),
called step by step, see fastnas_search.search_subnet):

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
   FLOPs search; edgecomp plugs its own measurement into ModelOpt's searcher instead (fastnas_latency): every distinct
   subnet deployed by the device's runtime and timed with the latency protocol at the device's threads and batch size
   (`latency_protocol`: fewer images and runs than a record's; each timing the median of `rounds` pairs of sessions,
   the subnet's and the unpruned network's), a subnet timed within the timing noise of the budget timed twice more
   (the median decides). Under a latency budget the bisection runs over each
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
R-CNN record's FLOPs count). Refused by check(), before any work, with the reason: DenseNet (fastnas_checks.
UNSEARCHABLE).

The record gains `fastnas`: the searched subnet config (the channels each searchable layer keeps), params and FLOPs
before and after (edgecomp's counts), the search's own numbers; compress.py adds `vs_baseline`, where the latency
ratio stands next to the FLOPs ratio (the report's point: -34 % FLOPs gave -19.6 % latency on its GPU).

Where the report is silent: how the score is computed (here the task's validation metric, the ModelOpt docs'
recommendation), the fine-tune's learning rate (here the run optimizer at a constant, low `lr`, as for
prune_unstructured: the pruned network keeps its trained weights), the channel divisor (the device profile's
measured one; ModelOpt's default is 32). Two departures from ModelOpt's searcher: when its bisection ends without a
subnet within the budget (it never tries its interval's upper end), the search space's smallest subnet is taken (see
fastnas_search.search_subnet); a latency budget is checked against measurements, never interpolated.

Where each part lives, beside this compressor: its settings (fastnas_settings), its refusals before any work
(fastnas_checks), the search space (fastnas_space), the search's steps (fastnas_search), the latency search
(fastnas_latency) and the record's `fastnas` (fastnas_result).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgecomp.compress.compressor import Compressor
from edgecomp.compress.context import CompressionContext, RunSpec
from edgecomp.compress.pruning.fastnas_checks import check_fastnas
from edgecomp.compress.pruning.fastnas_result import SearchRun, fastnas_record
from edgecomp.compress.pruning.fastnas_search import ValidationScore, modelopt_alone, search_subnet
from edgecomp.compress.pruning.fastnas_settings import FastNASSettings
from edgecomp.compress.pruning.fastnas_space import convert_search_space, divisor_for
from edgecomp.evaluate.evaluator import ACCURACY_METRIC
from edgecomp.evaluate.flops import count_flops, count_params
from edgecomp.lit import distributed
from edgecomp.models.fingerprint import weights_fingerprint
from edgecomp.models.modelopt_artifact import ModelOptView, restore_view, save_artifact

log = logging.getLogger("edgecomp")

SEARCH_CHECKPOINT = "fastnas_search-{fingerprint}.pth"
SEARCHED = (
    "fastnas_searched-{fingerprint}.pt"  # under trainer=ddp: the subnet rank 0 found, which every rank fine-tunes
)


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
    settings_class = FastNASSettings
    options: FastNASSettings

    def __init__(self, name: str, **settings: Any) -> None:
        super().__init__(name, **settings)
        self.view: ModelOptView | None = None  # set by compress(): what save() writes
        self.result: dict[str, Any] = {}  # set by compress(): the record's `fastnas`

    def divisor_for(self, device_divisor: int | None) -> int:
        """The channel divisor the search space uses: compressor.channel_divisor, or else the device profile's."""
        return divisor_for(self.options, device_divisor)

    def check(self, spec: RunSpec) -> None:
        check_fastnas(self.options, spec)

    def _convert(self, view: ModelOptView, model_name: str, divisor: int | None = None) -> None:
        """`view` converted in place into this compressor's FastNAS search space at channel divisor `divisor` (None:
        compressor.channel_divisor, which must then be set)."""
        divisor = divisor or self.options.channel_divisor
        if divisor is None:
            raise RuntimeError("FastNASPruning._convert needs the channel divisor the device profile resolves")
        convert_search_space(view, model_name, self.options, divisor)

    def compress(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        options = self.options
        size = context.image_size
        input_shape = (1, 3, size, size)
        metric = options.score_metric or ACCURACY_METRIC[context.task]
        divisor = self.divisor_for(context.device.channel_divisor)
        before = {"params": count_params(model), "flops": count_flops(model, input_shape)}
        fingerprint = weights_fingerprint(model)  # names the search's files: another baseline starts afresh
        checkpoint = context.work_dir / SEARCH_CHECKPOINT.format(fingerprint=fingerprint)
        resumed = checkpoint.exists()
        if resumed:
            log.info("fastnas: resuming the search from %s", checkpoint)
        batch_size = options.calibration_batch_size or int(context.datamodule.batch_size)
        latency = None
        if options.constraint == "latency":
            from edgecomp.compress.pruning.fastnas_latency import SubnetLatency

            # Timed on the first images of the evaluation split, the record's latency images
            protocol, rounds = options.search_protocol
            images = context.datamodule.fixed_images(protocol.images)
            latency = SubnetLatency(context.device, size, images, protocol, rounds)

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
                    state = search_subnet(
                        options, view, context, score, checkpoint, dummy_input, batch_size, divisor, latency
                    )
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
        if options.epochs > 0:
            view.model.train()  # Lightning keeps the modes it finds; the search left the network in eval mode
            context.training.fine_tune(context.training.task_module(view.model, options.lr), options.epochs)
            view.cpu()
        fine_tune_time = time.perf_counter() - start

        after = {"params": count_params(view.model), "flops": count_flops(view.model, input_shape)}
        run = SearchRun(divisor, metric, batch_size, score.evaluations, resumed, checkpoint, search_time)
        self.view = view
        self.result = fastnas_record(options, state, {"before": before, "after": after}, run, fine_tune_time, latency)
        return view.model

    def save(self, model: nn.Module, path: Path) -> Path:
        """modelopt.torch.opt.save of the pruned model's view: the pruning (ModelOpt state) and the weights."""
        if self.view is None or self.view.model is not model:
            raise RuntimeError("FastNASPruning.save is for the model its compress() returned")
        return save_artifact(self.view, path)

    @property
    def trains(self) -> bool:
        return self.options.epochs > 0  # the fine-tune

    def settings(self) -> dict[str, Any]:
        options = self.options
        return {
            "constraint": options.constraint,
            "flops": options.flops_target,
            "latency": options.latency_target,
            "latency_ranking": options.latency_ranking,
            "latency_protocol": dict(options.latency_protocol or {}),
            "channel_divisor": options.channel_divisor,  # null: the device profile's
            "channel_ratios": None if options.channel_ratios is None else list(options.channel_ratios),
            "search_layers": None if options.search_layers is None else list(options.search_layers),
            "epochs": options.epochs,
            "lr": options.lr,
            "score_metric": options.score_metric,  # null: the task's accuracy metric
            "calibration_batch_size": options.calibration_batch_size,  # null: the data's batch size
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
