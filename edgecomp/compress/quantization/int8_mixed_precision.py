"""`compressor=ptq_int8 compressor.mixed_precision=latency`: INT8 only where INT8 pays on the target.

On an AVX2 CPU without VNNI, ONNX Runtime's INT8 kernels beat its FP32 ones on dense convolutions but not on
depthwise ones, and every boundary between an INT8 and an FP32 region costs a QuantizeLinear or DequantizeLinear;
so full INT8 makes ResNet-50 1.8x faster and MobileNetV3-Large slower than FP32. This pass keeps a node in INT8 only
where ONNX Runtime runs it faster so, as measured on the device:

1. Full INT8 first (the quantizer's own file, calibrated as configured).
2. Both files profiled per node by ONNX Runtime's profiler with the device's threads and batch
   (edgecomp.evaluate.runtimes.onnxruntime_profile), each ran node's time attributed to the quantizer's nodes
   (edgecomp.compress.quantization.node_attribution): a node's own INT8 kernel time, its FP32 time (fused activation and layout
   reorders included), and what a conversion costs per element.
3. The partition into INT8 and FP32 nodes that minimises the estimated time, conversions between the two included,
   by a minimum cut (edgecomp.compress.quantization.precision_partition: node-by-node decisions add a conversion around every
   isolated FP32 node and made MobileNetV3-Large 1.6x slower than full INT8); the file re-quantized with the same
   calibration, the FP32 side left out (ONNX Runtime's quantizer, `nodes_to_exclude`).
4. The accuracy budget, as NNCF's accuracy-controlled quantization keeps one: the task's metric (top-1, or COCO
   mAP50-95) of the FP32 and the mixed files on `ACCURACY_IMAGES` held-out training images (never the evaluation
   split). While the mixed file (or full INT8, where the cut kept every node in INT8) loses more than `max_drop`
   points, the INT8 nodes that buy the least time are put back in FP32, 1, then 2, 4, ... at a time.
5. Whole files decide: the FP32 file and those of the full INT8 and mixed files within the budget are timed against
   each other in alternating rounds, one session at a time (edgecomp.evaluate.paired_latency); a quantized file is
   written only where its speed-up over FP32 has a 95 % interval above 1 (verdict `faster`), the fastest such.
   Otherwise the FP32 file is: INT8 pays nowhere on this target, as far as the host's noise lets one tell, and the
   record says so (every quantized node listed in FP32).

The record's `compression` gains `fp32_nodes` (each node left in FP32: name, op, why, its profiled INT8 and FP32
ms per image) and `mixed_precision` (the candidates' latency, ratio to FP32 with its interval and verdict, held-out
metric, and which was written).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx
import torch
import torch.nn as nn

from edgecomp.compress.context import CompressionContext
from edgecomp.compress.quantization.node_attribution import Attribution, attribute, quantized_nodes
from edgecomp.compress.quantization.precision_partition import PrecisionPartition
from edgecomp.data.sampling import dataset_length
from edgecomp.evaluate.evaluator import ACCURACY_METRIC
from edgecomp.evaluate.latency import LatencyProtocol
from edgecomp.evaluate.paired_latency import Side, time_alternately
from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime
from edgecomp.evaluate.runtimes.onnxruntime_profile import profile_nodes
from edgecomp.evaluate.uncertainty import FASTER

log = logging.getLogger("edgecomp")

if TYPE_CHECKING:
    from edgecomp.compress.quantization.ptq_int8 import Int8Quantization

ROUNDS = 3  # cut -> re-quantize -> profile rounds
TIMING_ROUNDS = 20  # the whole files are timed against each other in this many alternating rounds (as latency.rounds)


class LatencyChosenPrecision:
    """Chooses which of its nodes `quantizer` (an Int8Quantization) writes in INT8, by profiles on the device, and
    writes the fastest file within the accuracy budget (see the module docstring)."""

    def __init__(
        self, quantizer: Int8Quantization, max_drop: float, accuracy_images: int, profile_images: int, profile_runs: int
    ) -> None:
        self.quantizer = quantizer
        self.max_drop = max_drop
        self.accuracy_images = accuracy_images
        self.profile_images = profile_images
        self.profile_runs = profile_runs
        self.precision = quantizer.precision  # of the file written: "fp32" where INT8 paid nowhere

    def run(
        self, model: nn.Module, fp32: Path, output: Path, calibration: torch.Tensor, context: CompressionContext
    ) -> dict[str, Any]:
        device = context.device
        timing = calibration[: self.profile_images].numpy()
        metric = ACCURACY_METRIC[context.task]
        held_out = context.datamodule.held_out(self.accuracy_images)
        runtime = OnnxRuntime()

        def accuracy(path: Path) -> float:
            with device.pinned_threads():
                value = float(context.evaluator(model, runtime.load(path, device), held_out, device)[metric])
            return value if math.isfinite(value) else 0.0  # COCO's -1/NaN for "no such objects": nothing found

        def profile(path: Path, graph: onnx.GraphProto) -> Attribution:
            with device.pinned_threads():
                return attribute(profile_nodes(path, device, timing, runs=self.profile_runs), graph)

        with tempfile.TemporaryDirectory(dir=output.parent) as scratch:
            folder = Path(scratch)
            prepared = self.quantizer.preprocess(fp32, folder / "prepared.onnx")
            original = onnx.load(str(prepared), load_external_data=False)
            full = folder / "int8-full.onnx"
            method = self.quantizer.quantize_prepared(prepared, fp32, full, calibration)
            candidates = quantized_nodes(onnx.load(str(full), load_external_data=False).graph)
            op_of = {node.name: node.op_type for node in original.graph.node}
            fp32_profile = profile(prepared, original.graph)
            int8_profile = profile(full, original.graph)
            fp32_ms = {name: fp32_profile.ms.get(name, 0.0) for name in candidates}

            # 3. The partition that minimises the profiled time, conversions included; the conversion cost per
            # element re-measured on each mixed file made, until the cut stops changing.
            partition = PrecisionPartition(original, candidates, int8_profile, fp32_profile)
            per_element = int8_profile.ms_per_converted_element
            current, best_ms, tried = full, int8_profile.total_ms, [set(candidates)]
            int8_side = set(candidates)
            for round_ in range(ROUNDS):
                side = partition.cut(per_element)
                if side in tried:
                    break
                tried.append(side)
                path = folder / f"int8-mixed-{round_}.onnx"
                excluded_here = [name for name in candidates if name not in side]
                self.quantizer.quantize_prepared(prepared, fp32, path, calibration, excluded_here, method)
                mixed_profile = profile(path, original.graph)
                log.info(
                    "mixed precision, cut %d: %d of %d nodes in INT8 at %.3g ms per converted element: profiled "
                    "%.3f ms per image (full INT8 %.3f, FP32 %.3f)",
                    round_ + 1,
                    len(side),
                    len(candidates),
                    per_element,
                    mixed_profile.total_ms,
                    int8_profile.total_ms,
                    fp32_profile.total_ms,
                )
                if mixed_profile.total_ms < best_ms:
                    current, best_ms, int8_side = path, mixed_profile.total_ms, side
                measured = partition.measured_per_element(side, mixed_profile)
                if measured is not None:
                    per_element = measured
            int8_ms = partition.int8_ms
            excluded = {
                name: self._entry(name, op_of, "faster in FP32, boundary conversions counted", int8_ms, fp32_ms)
                for name in candidates
                if name not in int8_side
            }

            # 4. The accuracy budget, on held-out training images. Over it -- the cut's mixed file, or full INT8 where
            # the cut kept every node in INT8 -- the INT8 nodes that buy the least time go back to FP32 first.
            reference, int8_score = accuracy(fp32), accuracy(full)
            # The mixed file's score (`current`'s); None while there is none, i.e. while current is full INT8
            mixed_score = accuracy(current) if current != full else None
            kept = [name for name in candidates if name not in excluded]
            by_gain = sorted(kept, key=lambda name: fp32_ms.get(name, 0.0) - int8_ms.get(name, 0.0))

            def requantize(reverted: list[str]) -> float:
                nonlocal current
                for name in reverted:
                    excluded.setdefault(name, self._entry(name, op_of, "accuracy", int8_ms, fp32_ms))
                current = folder / f"int8-accuracy-{len(excluded)}.onnx"
                self.quantizer.quantize_prepared(prepared, fp32, current, calibration, list(excluded), method)
                return accuracy(current)

            start = mixed_score if mixed_score is not None else int8_score
            reverted, latest = self.within_budget(reference, start, by_gain, requantize)
            if reverted:
                mixed_score = latest
            scores = {"fp32": reference, "int8": int8_score, "mixed": mixed_score}

            # 5. Whole files decide, among those within the budget.
            scored = {"fp32": (fp32, reference), "int8": (full, int8_score)}
            if mixed_score is not None:  # the mixed file: `current`
                scored["mixed"] = (current, mixed_score)
            files = {
                name: path for name, (path, score) in scored.items() if self._drop(reference, score) <= self.max_drop
            }
            # A quantized file is written only where its speed-up's interval lies above 1 (its paired ratio to FP32
            # is `faster`); the fastest such, else the FP32 file.
            latency, vs_fp32 = self._time(files, context)
            paying = [name for name, ratio in vs_fp32.items() if ratio.verdict == FASTER]
            chosen = min(paying, key=lambda name: vs_fp32[name].ratio) if paying else "fp32"
            shutil.copyfile(files[chosen], output)

        if chosen == "fp32":
            self.precision = "fp32"
            for name in candidates:
                excluded.setdefault(
                    name, self._entry(name, op_of, "the whole INT8 file was not faster than FP32", int8_ms, fp32_ms)
                )
        elif chosen == "int8":
            excluded = {}
        return {
            "fp32_nodes": list(excluded.values()),
            "mixed_precision_choice": {
                "written": chosen,
                "int8_nodes": len(candidates) - len(excluded),
                "quantizable_nodes": len(candidates),
                "held_out_images": dataset_length(held_out.eval_dataloader().dataset),
                "metric": metric,
                "candidates": {
                    name: {
                        "latency_ms": latency.get(name),
                        "vs_fp32": vs_fp32[name].as_record() if name in vs_fp32 else None,
                        metric: score,
                        "drop_points": self._drop(reference, score),
                    }
                    for name, score in scores.items()  # fp32, int8, mixed
                    if score is not None
                },
            },
        }

    def within_budget(
        self, reference: float, score: float, by_gain: list[str], requantize: Callable[[list[str]], float]
    ) -> tuple[list[str], float]:
        """NNCF-style accuracy control: while a file scoring `score` loses more than `max_drop` points against
        `reference`, put the first nodes of `by_gain` (the INT8 nodes, least time bought first) back in FP32, 1, then
        2, 4, ... more at a time; `requantize(nodes)` writes the file with all of `nodes` in FP32 and returns its
        score. Never every node (that file is the FP32 one). Returns the nodes put back and the last score."""
        reverted: list[str] = []
        chunk = 1
        while self._drop(reference, score) > self.max_drop and len(by_gain) > chunk:
            reverted, by_gain, chunk = reverted + by_gain[:chunk], by_gain[chunk:], chunk * 2
            score = requantize(reverted)
        return reverted, score

    @staticmethod
    def _entry(
        name: str, op_of: dict[str, str], reason: str, int8_ms: dict[str, float], fp32_ms: dict[str, float]
    ) -> dict[str, Any]:
        return {
            "node": name,
            "op": op_of.get(name),
            "reason": reason,
            "int8_ms": int8_ms.get(name, 0.0),
            "fp32_ms": fp32_ms.get(name, 0.0),
        }

    @staticmethod
    def _drop(reference: float, score: float) -> float:
        return 100.0 * (reference - score)

    def _time(self, files: dict[str, Path], context: CompressionContext) -> tuple[dict[str, float], dict[str, Any]]:
        """Each file's median ms per image and each quantized file's ratio to the FP32 file (`files["fp32"]`) with its
        95 % interval and verdict: the files timed against each other in `TIMING_ROUNDS` alternating rounds, one
        session at a time (edgecomp.evaluate.paired_latency), `profile_runs` timed passes each."""
        if len(files) < 2:
            return {}, {}
        device = context.device
        images = context.datamodule.fixed_images(max(self.profile_images, device.batch_size))
        protocol = LatencyProtocol(
            images=len(images), runs=max(self.profile_runs, TIMING_ROUNDS), warmup=1, rounds=TIMING_ROUNDS
        )
        runtime = OnnxRuntime()
        names = list(files)
        timing = time_alternately([Side(runtime, files[name], name) for name in names], images, device, protocol)
        latency = {name: timing.latency(index)["median"] for index, name in enumerate(names)}
        reference = names.index("fp32")
        vs_fp32 = {name: timing.ratio(index, reference) for index, name in enumerate(names) if name != "fp32"}
        return latency, vs_fp32
