"""INT8 where INT8 pays (compressor.mixed_precision=latency): the per-node profile is attributed to the quantizer's
nodes, and the INT8 / FP32 partition minimises the profiled time, conversions between the two included.

The partition is tested here on constructed profiles (no timing: the numbers are given); the attribution on ONNX
Runtime's real profile of a real network (its structure, not its speed), and the whole pass through compress.py, in
tests/integration/test_mixed_precision_files.py.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecomp.compress.quantization.int8_mixed_precision import LatencyChosenPrecision
from edgecomp.compress.quantization.node_attribution import Attribution
from edgecomp.compress.quantization.precision_partition import PrecisionPartition
from edgecomp.compress.quantization.ptq_int8 import Int8Quantization
from edgecomp.errors import ConfigError

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
