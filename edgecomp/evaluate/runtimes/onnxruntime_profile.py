"""Per-node time of an ONNX file as ONNX Runtime runs it on the target: its built-in profiler.

ONNX Runtime rewrites the graph before running it (fusions, NCHWc blocked layouts on x86 for FP32, NHWC and
QLinear kernels for INT8), so the nodes that run are not the file's nodes. The profile is therefore returned with
the optimized graph ONNX Runtime actually ran (saved through `optimized_model_filepath` by the same session): each
timed node's name, op type, inputs and outputs, from which a caller can attribute the time back to the file's own
nodes (edgecomp.compress.quantization.int8_mixed_precision does).

The session is configured exactly as the runtime deploys (edgecomp.evaluate.runtimes.onnxruntime: the device's
intra-op threads, one inter-op thread, every graph optimisation), with profiling on; `warmup` runs are discarded.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edgecomp.evaluate.runtimes.onnxruntime import session_options

KERNEL_SUFFIX = "_kernel_time"


@dataclass
class NodeProfile:
    """Mean ms per image of each node ONNX Runtime ran (by its name in `graph`), that optimized graph, and the order
    the nodes ran in (one inter-op thread: one node at a time). ONNX Runtime names a node that has no name in
    the graph (e.g. the pieces of a function it inlined) "<op type>_<its internal index>" in the profile."""

    ms: dict[str, float]
    graph: onnx.GraphProto
    order: list[str]
    elements: dict[str, int]  # each node's output elements per image (of its first output)
    runs: int
    batch_size: int
    total_ms: float = field(init=False)

    def __post_init__(self) -> None:
        self.total_ms = float(sum(self.ms.values()))


def profile_nodes(path: str | os.PathLike, device, images: np.ndarray, runs: int = 20, warmup: int = 3) -> NodeProfile:
    """Profile the ONNX file `path` on `device` (a TargetDevice on the CPU) over `runs` passes of `images`
    (N, 3, H, W) in batches of the device's batch size; node times are per image, averaged over the passes."""
    batch = device.batch_size
    batches = [np.ascontiguousarray(images[i : i + batch], dtype=np.float32) for i in range(0, len(images), batch)]
    with tempfile.TemporaryDirectory() as scratch:
        options = session_options(device.threads)
        options.optimized_model_filepath = str(Path(scratch) / "optimized.onnx")
        options.log_severity_level = 3  # not the warning that a file saved with layout optimisations is CPU-specific
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(scratch) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for _ in range(warmup + runs):
            for inputs in batches:
                session.run(None, {name: inputs})
        events = json.loads(Path(session.end_profiling()).read_text())
        graph = onnx.load(str(Path(scratch) / "optimized.onnx"), load_external_data=False).graph
    # The profile holds every run since the session started: keep the nodes timed inside the last `runs` passes.
    passes = sorted((event["ts"], event["ts"] + event["dur"]) for event in events if event.get("name") == "model_run")[
        warmup * len(batches) :
    ]
    begin = passes[0][0]
    totals: dict[str, float] = defaultdict(float)  # insertion order: the order the nodes first ran in
    elements: dict[str, int] = {}
    for event in sorted(events, key=lambda event: event["ts"]):
        if event.get("cat") == "Node" and event["name"].endswith(KERNEL_SUFFIX) and event["ts"] >= begin:
            node = event["name"][: -len(KERNEL_SUFFIX)]
            totals[node] += event["dur"] / 1000.0  # microseconds -> ms
            if node not in elements:
                shapes = [list(entry.values())[0] for entry in event["args"].get("output_type_shape", [])]
                elements[node] = int(np.prod(shapes[0])) // batch if shapes else 0
    per_image = runs * len(images)
    return NodeProfile(
        {node: ms / per_image for node, ms in totals.items()}, graph, list(totals), elements, runs, batch
    )
