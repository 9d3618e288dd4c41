"""compressor=ptq_int8 mixed_precision=latency on real files: every profiled millisecond of MobileNetV3-Small's
quantized graph attributed to a node, and compress.py's run writing the fastest file within the accuracy budget with
the record saying why (tests/unit/test_mixed_precision.py: the choices on small graphs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgecomp.compress.quantization.node_attribution import attribute, quantized_nodes
from edgecomp.compress.quantization.ptq_int8 import Int8Quantization
from edgecomp.evaluate.device import TargetDevice
from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime
from edgecomp.evaluate.runtimes.onnxruntime_profile import profile_nodes
from tests.conftest import train_then_compress

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory, random_mobilenet):
    """MobileNetV3-Small (HardSwish, squeeze-excite, depthwise and residual paths) at 64 px: its FP32 file, the file
    ONNX Runtime's quantizer sees, and that file in full INT8."""
    folder = tmp_path_factory.mktemp("mixed")
    _, fp32 = random_mobilenet
    quantizer = Int8Quantization("ptq_int8", calib_images=8, calibrate_method="minmax")
    prepared = quantizer.preprocess(fp32, folder / "prepared.onnx")
    int8 = folder / "int8.onnx"
    quantizer.quantize_prepared(
        prepared, fp32, int8, torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    )
    return prepared, int8


@pytest.mark.parametrize("file", ["prepared", "int8"])
def test_every_profiled_millisecond_is_attributed_to_a_node_of_the_quantized_graph(mobilenet, file):
    prepared, int8 = mobilenet
    path = {"prepared": prepared, "int8": int8}[file]
    device = TargetDevice("cpu", "cpu", OnnxRuntime(), threads=1)
    profile = profile_nodes(path, device, np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32), runs=2)
    original = onnx.load(str(prepared)).graph
    attributed = attribute(profile, original)
    assert profile.total_ms > 0 and len(profile.ms) > 30  # ONNX Runtime ran the rewritten graph, node by node
    assert attributed.total_ms == pytest.approx(profile.total_ms)
    assert attributed.ms.get("", 0.0) == 0.0, "time no rule attributes"
    names = {node.name for node in original.node}
    assert set(attributed.ms) <= names
    convolutions = [node.name for node in original.node if node.op_type == "Conv"]
    # Each convolution ran (the rewritten graph renames them: fused NCHWc convolutions in FP32, QLinearConv in INT8).
    assert all(attributed.ms.get(name, 0.0) > 0 for name in convolutions)
    if file == "int8":
        # The conversions at the INT8 region's edges (QuantizeLinear, DequantizeLinear, Transposes) are found.
        assert 0 < sum(attributed.conversion_ms.values()) < attributed.total_ms
        assert attributed.conversion_elements > 0
        assert set(convolutions) <= set(quantized_nodes(onnx.load(str(int8)).graph))


MIXED = "ptq_int8 compressor.mixed_precision=latency"


@pytest.fixture(scope="module")
def compressed(tmp_path_factory, data_dir, trained):
    """The smoke classifier trained once, then compressed with mixed_precision=latency from its checkpoint."""
    _, _, records = train_then_compress(trained, tmp_path_factory.mktemp("mixed_cls"), data_dir, "smoke", (MIXED,))
    return records[MIXED]


def test_the_fastest_file_within_the_accuracy_budget_is_written_and_the_record_says_why(compressed):
    record = compressed
    choice = record["compression"]["mixed_precision_choice"]
    candidates = choice["candidates"]
    within = {name: c for name, c in candidates.items() if c["drop_points"] <= record["compression"]["max_drop"]}
    assert choice["written"] in within and "fp32" in within  # FP32 is always a candidate, at no drop
    # A quantized file only where its paired speed-up over FP32 has an interval above 1, the fastest such.
    paying = {name: c["vs_fp32"] for name, c in within.items() if name != "fp32" and c["vs_fp32"]["ci95"][1] < 1}
    assert choice["written"] == (min(paying, key=lambda name: paying[name]["ratio"]) if paying else "fp32")
    for name, candidate in within.items():
        if name != "fp32":
            assert (
                candidate["vs_fp32"]["rounds"] == 20
                and candidate["vs_fp32"]["ci95"][0] <= candidate["vs_fp32"]["ratio"]
            )
    # every smoke training image (24 per class x 10 classes): fewer than accuracy_images (512)
    assert choice["held_out_images"] == 240 and choice["metric"] == "top1"
    artifact = onnx.load(record["artifact"]).graph
    in_int8 = set(quantized_nodes(artifact))
    fp32_nodes = record["compression"]["fp32_nodes"]
    assert record["runtime"]["precision"] == ("fp32" if choice["written"] == "fp32" else "int8")
    if choice["written"] == "int8":
        assert fp32_nodes == [] and choice["int8_nodes"] == choice["quantizable_nodes"] > 0
    if choice["written"] == "fp32":
        assert not in_int8 and len(fp32_nodes) == choice["quantizable_nodes"]
    for entry in fp32_nodes:  # each node listed in FP32 is FP32 in the written file, with its profiled times
        assert entry["node"] not in in_int8
        assert entry["reason"] and entry["op"] and entry["int8_ms"] >= 0 and entry["fp32_ms"] >= 0
    assert Path(record["artifact"]).is_file()
