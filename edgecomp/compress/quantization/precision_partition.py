"""Which nodes run in INT8 and which in FP32 so that the whole graph is fastest: a minimum s-t cut.

Deciding node by node fails: every edge between an INT8 and an FP32 node costs a conversion (a QuantizeLinear or
DequantizeLinear, and with ONNX Runtime's NHWC INT8 kernels a Transpose), so leaving isolated nodes in FP32 adds
conversions around each of them. On MobileNetV3-Large at 224 px, leaving in FP32 every node that a per-node profile
finds slower in INT8 made the file 1.6x slower than full INT8. The cost of a labelling is

    sum over nodes of (INT8 time if INT8 else FP32 time) + sum over tensors whose two ends differ of a conversion,

a sum of unary and pairwise terms whose pairwise term is zero for equal labels and non-negative otherwise: its
minimum is a minimum cut (Greig, Porteous & Seheult 1989; Boykov & Kolmogorov's graph cuts), which networkx
computes exactly. What a conversion costs per element is the model's one free number: the full INT8 file's
conversions give a first value, but a boundary in a mixed file costs more than a QuantizeLinear (with it come a
Transpose out of the INT8 kernels' NHWC layout and a Reorder into the FP32 kernels' NCHWc blocks), so the caller
re-measures it on each mixed file it makes and cuts again (edgecomp.compress.quantization.int8_mixed_precision). The terms come from the profiles (edgecomp.compress.quantization.node_attribution): a node's INT8 time is what
it took in the full INT8 file, its FP32 time what it took in the FP32 file, each with the conversions and layout
reorders at its boundary there (so the all-INT8 and all-FP32 labellings cost what the profiles measured); a tensor
between two quantized nodes labelled apart costs a conversion per element times its elements. Nodes the quantizer
does not quantize are FP32 whatever the cut (their conversions are in the quantized neighbours' times).
"""

from __future__ import annotations

from collections import defaultdict

import networkx as nx
import onnx

from edgecomp.compress.quantization.node_attribution import Attribution, GraphIndex, fused_owner

_INT8, _FP32 = "<int8>", "<fp32>"  # the cut's terminals


def tensor_elements(model: onnx.ModelProto) -> dict[str, int]:
    """Elements per image of every tensor whose shape ONNX's shape inference finds (the batch dimension as 1)."""
    graph = onnx.shape_inference.infer_shapes(model).graph
    elements = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        shape = info.type.tensor_type.shape
        count = 1
        for position, dim in enumerate(shape.dim):
            if dim.HasField("dim_value"):
                count *= dim.dim_value if position > 0 else 1
        elements[info.name] = count
    return elements


class PrecisionPartition:
    """The cut's terms for `candidates` (the quantizer's nodes) of `model`, from the profiles of the FP32 and the
    full INT8 files; `cut(per_element)` solves it for a conversion cost per element."""

    def __init__(self, model: onnx.ModelProto, candidates: list[str], int8: Attribution, fp32: Attribution) -> None:
        graph = model.graph
        index = GraphIndex(graph)
        elements = tensor_elements(model)
        weights = {initializer.name for initializer in graph.initializer}
        self.candidates = list(candidates)
        chosen = set(candidates)
        # A node's time in each file, with the conversions it has there: all-INT8 and all-FP32 cost exactly what
        # the two profiles measured; a mixed labelling adds the conversions between candidates labelled apart.
        self.int8_ms = {name: int8.ms.get(name, 0.0) for name in candidates}
        self.int8_conversion_ms = {name: int8.conversion_ms.get(name, 0.0) for name in candidates}
        self.fp32_ms = {name: fp32.ms.get(name, 0.0) for name in candidates}
        # Elements converted between two candidates if their labels differ.
        self.pairwise: dict[tuple[str, str], int] = defaultdict(int)
        for tensor, consumers in index.consumers.items():
            if tensor in weights:
                continue
            count = elements.get(tensor, 0)
            producer = index.producer.get(tensor)
            # A tensor out of an activation fused into a quantized node (Conv -> Relu) leaves that node.
            owner = fused_owner(producer.name, index) if producer is not None and producer.name else None
            source = owner if owner in chosen else None
            targets = [node.name for node in consumers if node.name in chosen]
            if source is not None:
                for target in targets:
                    self.pairwise[source, target] += count

    def cut(self, per_element: float) -> set[str]:
        """The candidates to run in INT8 at a conversion cost of `per_element` ms per element."""
        network: nx.DiGraph[str] = nx.DiGraph()
        for name in self.candidates:
            network.add_edge(_INT8, name, capacity=self.fp32_ms[name])  # cut: `name` runs in FP32
            network.add_edge(name, _FP32, capacity=self.int8_ms[name])  # cut: `name` runs in INT8
        for (a, b), count in self.pairwise.items():
            for u, v in ((a, b), (b, a)):
                previous = network.get_edge_data(u, v, {}).get("capacity", 0.0)
                network.add_edge(u, v, capacity=previous + per_element * count)
        _, (int8_side, _) = nx.minimum_cut(network, _INT8, _FP32)
        return set(int8_side) - {_INT8}

    def measured_per_element(self, int8_side: set[str], mixed: Attribution) -> float | None:
        """The conversion cost per element that the mixed file made for `int8_side` shows: its conversion time beyond
        what the INT8 side's nodes converted in the full INT8 file, over the elements crossing between candidates
        (None if none cross)."""
        crossing = sum(count for (a, b), count in self.pairwise.items() if (a in int8_side) != (b in int8_side))
        if not crossing:
            return None
        before = sum(self.int8_conversion_ms[name] for name in int8_side)
        return max(sum(mixed.conversion_ms.values()) - before, 0.0) / crossing
