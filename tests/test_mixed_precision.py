"""INT8 where INT8 pays (compressor.mixed_precision=latency): the per-node profile is attributed to the quantizer's
nodes, and the INT8 / FP32 partition minimises the profiled time, conversions between the two included.

The partition is tested on constructed profiles (no timing: the numbers are given), the attribution on ONNX
Runtime's real profile of a real network (its structure, not its speed), and the whole pass through compress.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgecomp.compress.quantization.int8_mixed_precision import LatencyChosenPrecision
from edgecomp.compress.quantization.node_attribution import Attribution, attribute, quantized_nodes
from edgecomp.compress.quantization.precision_partition import PrecisionPartition
from edgecomp.compress.quantization.ptq_int8 import Int8Quantization
from edgecomp.errors import ConfigError
from edgecomp.evaluate.device import TargetDevice
from edgecomp.evaluate.onnx_export import export_onnx
from edgecomp.evaluate.runtimes.onnxruntime import OnnxRuntime
from edgecomp.evaluate.runtimes.onnxruntime_profile import profile_nodes
from edgecomp.models.timm_classifier import create_classifier
from tests.conftest import train_then_compress

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def chain(channels: int = 8, size: int = 16, convs: int = 3) -> onnx.ModelProto:
    """input -> conv0 -> relu0 -> conv1 -> relu1 -> ... -> output: 1x1 convolutions at `size` x `size`."""
    rng = np.random.default_rng(0)
    nodes, weights, previous = [], [], "input"
    for k in range(convs):
        weights.append(
            numpy_helper.from_array(rng.standard_normal((channels, channels, 1, 1)).astype(np.float32), f"w{k}")
        )
        nodes.append(helper.make_node("Conv", [previous, f"w{k}"], [f"c{k}"], name=f"conv{k}"))
        nodes.append(helper.make_node("Relu", [f"c{k}"], [f"r{k}"], name=f"relu{k}"))
        previous = f"r{k}"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", channels, size, size])],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, ["batch", channels, size, size])],
        weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def profiled(ms: dict[str, float]) -> Attribution:
    return Attribution(ms=dict(ms), conversion_ms={}, conversion_elements=0)


def test_a_node_slower_in_int8_runs_in_fp32_and_one_faster_in_int8():
    model = chain(convs=2)
    int8 = profiled({"conv0": 3.0, "conv1": 1.0})  # conv0 made slower by INT8, conv1 faster
    fp32 = profiled({"conv0": 1.0, "conv1": 4.0})
    partition = PrecisionPartition(model, ["conv0", "conv1"], int8, fp32)
    assert partition.cut(per_element=1e-6) == {"conv1"}
    # The same profile with conversions too dear to split the chain (8 x 16 x 16 elements x 0.01 ms = 20 ms): the
    # cheaper whole, all INT8 (4 ms against 5 ms all FP32).
    assert partition.cut(per_element=0.01) == {"conv0", "conv1"}


def test_an_isolated_slow_node_stays_in_int8_when_its_conversions_cost_more_than_it_loses():
    model = chain(convs=3)
    int8 = profiled({"conv0": 1.0, "conv1": 1.2, "conv2": 1.0})
    fp32 = profiled({"conv0": 2.0, "conv1": 1.0, "conv2": 2.0})
    partition = PrecisionPartition(model, ["conv0", "conv1", "conv2"], int8, fp32)
    elements = 8 * 16 * 16  # one tensor between two convolutions, per image
    # conv1 alone in FP32 saves 0.2 ms and costs two conversions: worth it only below 0.1 ms per tensor.
    assert partition.cut(per_element=0.05 / elements) == {"conv0", "conv2"}
    assert partition.cut(per_element=0.15 / elements) == {"conv0", "conv1", "conv2"}
    # The mirror case, only conv1 faster in INT8: alone in INT8 while its two conversions cost less than it gains.
    mirror = PrecisionPartition(model, ["conv0", "conv1", "conv2"], fp32, int8)
    assert mirror.cut(per_element=0.05 / elements) == {"conv1"}
    assert mirror.cut(per_element=0.15 / elements) == set()
    # Nothing faster in INT8: everything in FP32, even with free conversions.
    assert PrecisionPartition(model, ["conv0", "conv1"], profiled({"conv0": 5, "conv1": 5}), fp32).cut(0.0) == set()


def test_the_conversion_cost_is_re_measured_from_a_mixed_file():
    model = chain(convs=2)
    int8 = Attribution(ms={"conv0": 1.0, "conv1": 1.0}, conversion_ms={"conv0": 0.25}, conversion_elements=100)
    partition = PrecisionPartition(model, ["conv0", "conv1"], int8, profiled({"conv0": 1.0, "conv1": 1.0}))
    assert int8.ms_per_converted_element == pytest.approx(0.25 / 100)
    # conv1 in FP32: conv0 -> conv1 (8 x 16 x 16 elements) is converted; beyond conv0's 0.25 ms the mixed file
    # converted for 0.75 ms more.
    mixed = Attribution(ms={"conv0": 1.5, "conv1": 1.0}, conversion_ms={"conv0": 1.0}, conversion_elements=0)
    assert partition.measured_per_element({"conv0"}, mixed) == pytest.approx(0.75 / (8 * 16 * 16))
    assert partition.measured_per_element({"conv0", "conv1"}, mixed) is None  # nothing crosses


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    """MobileNetV3-Small (HardSwish, squeeze-excite, depthwise and residual paths) at 64 px: its FP32 file, the file
    ONNX Runtime's quantizer sees, and that file in full INT8."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("mixed")
    fp32 = export_onnx(create_classifier("mobilenetv3_small_100", num_classes=10).eval(), folder / "fp32.onnx", 64)
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


def test_accuracy_control_puts_the_least_gaining_int8_nodes_back_in_fp32_until_the_budget_holds():
    """Eight INT8 nodes, each costing 0.6 points of top-1 (a full INT8 file 4.8 points down, over a 1-point budget):
    1, then 2, then 4 more go back to FP32, least time bought first, and the file with one INT8 node left is within
    budget. A file already within budget is left alone."""
    chooser = LatencyChosenPrecision(Int8Quantization("ptq_int8"), max_drop=1.0, accuracy_images=8, profile_images=1,
                                     profile_runs=1)  # fmt: skip
    by_gain = [f"node{i}" for i in range(8)]  # least time bought first
    written = []

    def requantize(fp32_nodes: list[str]) -> float:
        written.append(list(fp32_nodes))
        return 0.9 - 0.006 * (8 - len(fp32_nodes))

    reverted, score = chooser.within_budget(0.9, 0.9 - 0.048, by_gain, requantize)
    assert [len(nodes) for nodes in written] == [1, 3, 7] and reverted == by_gain[:7]
    assert score == pytest.approx(0.894) and 100 * (0.9 - score) <= 1.0
    assert chooser.within_budget(0.9, 0.895, by_gain, requantize) == ([], 0.895) and len(written) == 3


def test_bad_mixed_precision_settings_are_refused():
    with pytest.raises(ConfigError, match="compressor.mixed_precision=speed: expected"):
        Int8Quantization("ptq_int8", mixed_precision="speed")
    with pytest.raises(ConfigError, match="compressor.max_drop=-1"):
        Int8Quantization("ptq_int8", mixed_precision="latency", max_drop=-1)
    with pytest.raises(ConfigError, match="compressor.profile_runs=0"):
        Int8Quantization("ptq_int8", mixed_precision="latency", profile_runs=0)


MIXED = "ptq_int8 compressor.mixed_precision=latency"


@pytest.fixture(scope="module")
def compressed(tmp_path_factory, data_dir):
    """The smoke classifier trained once, then compressed with mixed_precision=latency from its checkpoint."""
    _, _, records = train_then_compress(tmp_path_factory.mktemp("mixed_cls"), data_dir, "smoke", (MIXED,))
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
