"""Read-side helpers over an ``onnx.ModelProto`` graph: producers, consumers, constants, inferred shapes.

Passes edit the graph's node list directly (plain protobuf); they rebuild a ``GraphIndex`` after each edit.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

from sparsec.node import SparseNodeInfo, is_sparsec

Dim = int | str | None


def subgraph_reads(node: onnx.NodeProto) -> set[str]:
    """Outer-scope values read inside ``node``'s subgraphs (If/Loop/Scan bodies, recursively): implicit inputs."""
    reads: set[str] = set()
    for a in node.attribute:
        graphs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
        for g in graphs:
            defined = {i.name for i in g.input} | {t.name for t in g.initializer}
            for inner in g.node:
                reads.update(i for i in list(inner.input) + sorted(subgraph_reads(inner)) if i and i not in defined)
                defined.update(inner.output)
    return reads


def node_reads(node: onnx.NodeProto) -> list[str]:
    """Every value ``node`` reads: its inputs, then what its subgraphs read from the enclosing graph."""
    explicit = [i for i in node.input if i]
    return explicit + sorted(subgraph_reads(node) - set(explicit))


class GraphIndex:
    """Who produces and who consumes each value; which values are constants; what shapes were inferred."""

    def __init__(self, model: onnx.ModelProto) -> None:
        g = model.graph
        self.model = model
        self.initializers = {t.name: t for t in g.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in g.node:
            for out in node.output:
                self.producer[out] = node
            for inp in node_reads(node):
                self.consumers[inp].append(node)
        self.graph_outputs = {o.name for o in g.output}
        self.shapes: dict[str, list[Dim]] = {}
        self.dtypes: dict[str, int] = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            tt = vi.type.tensor_type
            if not vi.type.HasField("tensor_type"):
                continue
            self.dtypes[vi.name] = tt.elem_type
            if tt.HasField("shape"):
                self.shapes[vi.name] = [_dim(d) for d in tt.shape.dim]
        for t in g.initializer:
            self.dtypes[t.name] = t.data_type
            self.shapes[t.name] = [int(d) for d in t.dims]

    def constant(self, name: str) -> np.ndarray | None:
        """The value of ``name`` when it is an initializer or the output of a Constant node with a tensor value."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name == "value_float":
                    return np.array(a.f, np.float32)
                if a.name == "value_floats":
                    return np.array(list(a.floats), np.float32)
        return None

    def sole_consumer(self, name: str) -> onnx.NodeProto | None:
        """The only node reading ``name``, when exactly one node reads it once and it is not a graph output."""
        users = self.consumers.get(name, [])
        if name in self.graph_outputs or len(users) != 1 or list(users[0].input).count(name) != 1:
            return None
        return users[0]

    def rank(self, name: str) -> int | None:
        shape = self.shapes.get(name)
        return None if shape is None else len(shape)


def _dim(d: onnx.TensorShapeProto.Dimension) -> Dim:
    if d.HasField("dim_value"):
        return int(d.dim_value)
    return d.dim_param or None


def attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    """An attribute's Python value (strings decoded to str), or ``default``."""
    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def topo_sort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` topologically (stable: keeps the existing order where it is already valid)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for node in pending:
            if all(i in available for i in node_reads(node)):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            missing = sorted({i for n in rest for i in node_reads(n) if i not in available})[:3]
            raise ValueError(f"graph has a cycle or undefined inputs {missing}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def remove_unused_initializers(graph: onnx.GraphProto) -> None:
    """Drop initializers no node (subgraphs included) or graph output reads any more."""
    used = {i for n in graph.node for i in node_reads(n)} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def sparse_info(node: onnx.NodeProto) -> SparseNodeInfo | None:
    """The config of a sparsec node, or None for any other node."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if not is_sparsec(node.op_type, node.domain, attrs):
        return None
    ctx = attrs["ep_cache_context"]
    return SparseNodeInfo.decode(ctx.decode() if isinstance(ctx, bytes) else ctx)
