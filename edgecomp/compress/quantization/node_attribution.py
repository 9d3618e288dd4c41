"""Which of a file's own nodes each node ONNX Runtime ran belongs to: attributing a per-node profile
(edgecomp.evaluate.runtimes.onnxruntime_profile) back to the graph the quantizer saw.

ONNX Runtime runs a rewritten graph. On this CPU the FP32 file's convolutions become NCHWc convolutions with their
BatchNorm and activation fused, named after the fused chain's output tensor plus "_nchwc", with ReorderInput /
ReorderOutput nodes where the blocked layout starts and ends; the INT8 file's DequantizeLinear -> op ->
QuantizeLinear groups become QLinear kernels named after the op (plus "_token_N" where a name was taken), with
QuantizeLinear / DequantizeLinear (and NHWC Transposes) left where the INT8 region starts and ends. The rules,
in order, for an optimized node:

1. its name, with ONNX Runtime's suffixes ("_token_N", "_nchwc") removed, is a node of the original graph, or a
   tensor of it (the node that produces that tensor);
2. one of its outputs is a tensor of the original graph (a ReorderOutput restores the original tensor);
3. otherwise it is a conversion or layout node and belongs to its neighbour: nodes that convert into a region
   (QuantizeLinear, ReorderInput, Transpose) to the node that consumes their output, the others (DequantizeLinear,
   ReorderOutput) to the node that produces their input;
4. a node the optimized graph leaves unnamed (the pieces of a function ONNX Runtime inlined, e.g. HardSwish as
   HardSigmoid and Mul) belongs to the node that ran just before it, which produced its input.

An owner that is an activation or BatchNorm fused into the convolution before it (its input produced by a node
that nothing else reads) is then moved to that node: a fused Conv + ReLU is the Conv's cost on both sides. So a
quantized node's INT8 cost includes the conversions at its boundary, and its FP32 cost the layout reorders at its
boundary: what switching it between INT8 and FP32 changes.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import onnx

from edgecomp.evaluate.runtimes.onnxruntime_profile import NodeProfile

# ONNX Runtime's suffixes on the names of the nodes it creates.
_SUFFIXES = re.compile(r"(_token_\d+|_nchwc)$")
# Ops that ONNX Runtime fuses into the convolution (or GEMM) before them, so their time is that node's.
FUSED_INTO_PRODUCER = {"Relu", "Clip", "HardSwish", "HardSigmoid", "Sigmoid", "LeakyRelu", "BatchNormalization"}
# Optimized nodes that convert a tensor into the format of the node after them.
_CONVERTS_FORWARD = {"QuantizeLinear", "ReorderInput", "Transpose", "DynamicQuantizeLinear"}


class GraphIndex:
    """Producers and consumers of a graph's tensors, and its nodes by name."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.nodes = {node.name: node for node in graph.node if node.name}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for tensor in node.output:
                self.producer[tensor] = node
            for tensor in node.input:
                if tensor:
                    self.consumers[tensor].append(node)


def _strip(name: str) -> str:
    while (stripped := _SUFFIXES.sub("", name)) != name:
        name = stripped
    return name


def fused_owner(name: str, original: GraphIndex) -> str:
    """`name`, or the node it is fused into (repeatedly: Conv -> BatchNorm -> ReLU is the Conv's)."""
    node = original.nodes.get(name)
    while node is not None and node.op_type in FUSED_INTO_PRODUCER and node.input:
        producer = original.producer.get(node.input[0])
        if producer is None or not producer.name or len(original.consumers[node.input[0]]) != 1:
            break
        node = producer
    return node.name if node is not None else name


@dataclass
class Attribution:
    """Profiled ms per image by original node name ("" for what no rule attributes): `ms` all of it, `conversion_ms`
    the part that conversion and layout nodes took (rule 3), and the conversions' output elements (per image)."""

    ms: dict[str, float]
    conversion_ms: dict[str, float]
    conversion_elements: int

    @property
    def total_ms(self) -> float:
        return float(sum(self.ms.values()))

    def kernel_ms(self, name: str) -> float:
        """The node's own time: what it took less the conversions at its boundary."""
        return self.ms.get(name, 0.0) - self.conversion_ms.get(name, 0.0)

    @property
    def ms_per_converted_element(self) -> float:
        """What a conversion (QuantizeLinear, DequantizeLinear, a layout Transpose or Reorder) costs per element."""
        return sum(self.conversion_ms.values()) / self.conversion_elements if self.conversion_elements else 0.0


def attribute(profile: NodeProfile, original: onnx.GraphProto) -> Attribution:
    """The profiled time of `profile` (a NodeProfile of a file made from `original`) by original node name."""
    optimized = profile.graph
    source = GraphIndex(original)
    ran = GraphIndex(optimized)
    owner: dict[int, str] = {}

    def direct(node: onnx.NodeProto) -> str | None:
        for candidate in (node.name, _strip(node.name)):
            if candidate in source.nodes:
                return candidate
            if candidate in source.producer and source.producer[candidate].name:
                return source.producer[candidate].name
        for tensor in node.output:
            if tensor in source.producer and source.producer[tensor].name:
                return source.producer[tensor].name
        return None

    pending = []
    for node in optimized.node:
        found = direct(node)
        if found is None:
            pending.append(node)
        else:
            owner[id(node)] = found
    converting = {node.name for node in pending if node.name}
    # Rule 3, until nothing changes: a chain of conversion nodes takes the owner of the node at its end.
    changed = True
    while pending and changed:
        changed = False
        for node in list(pending):
            if node.op_type in _CONVERTS_FORWARD:
                neighbours = [c for tensor in node.output for c in ran.consumers.get(tensor, [])]
            else:
                neighbours = [ran.producer[t] for t in node.input if t in ran.producer]
            known = [owner[id(n)] for n in neighbours if id(n) in owner]
            if known:
                owner[id(node)] = known[0]
                pending.remove(node)
                changed = True
    by_name = {node.name: owner.get(id(node)) for node in optimized.node if node.name}
    totals: dict[str, float] = defaultdict(float)
    conversions: dict[str, float] = defaultdict(float)
    conversion_elements = 0
    previous: str | None = None
    for name in profile.order:
        # A node the graph does not name (the profile calls it "<op type>_<index>"; e.g. the pieces of an inlined
        # HardSwish) belongs to the node that ran before it, which produced its input.
        found = by_name.get(name) or previous
        key = fused_owner(found, source) if found else ""
        totals[key] += profile.ms[name]
        if name in converting:
            conversions[key] += profile.ms[name]
            conversion_elements += profile.elements.get(name, 0)
        previous = found
    return Attribution(dict(totals), dict(conversions), conversion_elements)


def quantized_nodes(qdq: onnx.GraphProto) -> list[str]:
    """The nodes a QDQ file runs in INT8: those that read a DequantizeLinear output (other than Q/DQ themselves),
    in graph order. Their names are the original graph's: the quantizer keeps them."""
    index = GraphIndex(qdq)
    names = []
    for node in qdq.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or not node.name:
            continue
        if any(
            index.producer.get(t) is not None and index.producer[t].op_type == "DequantizeLinear" for t in node.input
        ):
            names.append(node.name)
    return names
