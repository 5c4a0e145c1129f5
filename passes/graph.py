"""What the passes need of an ``onnx_ir`` graph that onnx-ir does not provide itself.

onnx-ir gives producers, uses (subgraph reads included), initializers and in-place edits. This module adds: a value's
constant as numpy (``constant``), a value's static dims, the single consumer of a value, a stable topological sort
that keeps untouched nodes where they are, the removal of what a rewrite left unused, and ``to_proto``, which writes
the model as the protobuf pipeline always wrote it (so equal inputs keep giving equal artifact bytes).
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard

import numpy as np
import onnx
import onnx_ir as ir

Dim = int | str | None


def is_onnx(node: ir.Node | None, op: str) -> TypeGuard[ir.Node]:
    """``node`` is the default-domain op ``op``."""
    return node is not None and node.op_type == op and node.domain in ("", "ai.onnx")


def attr(node: ir.Node, name: str, default: Any = None) -> Any:
    """An attribute's Python value, or ``default``."""
    a = node.attributes.get(name)
    if a is None or not isinstance(a, ir.Attr):
        return default
    value = a.value
    if isinstance(value, ir.TensorProtocol):
        return value.numpy()
    if isinstance(value, (list, tuple)):
        return list(value)
    return value


def constant(value: ir.Value | None) -> np.ndarray | None:
    """The value of an initializer or of a Constant node's output (``value``, ``value_float(s)``); else None."""
    if value is None:
        return None
    if value.const_value is not None and value.is_initializer():
        return value.const_value.numpy()
    node = value.producer()
    if node is not None and is_onnx(node, "Constant"):
        for name, a in node.attributes.items():
            if name == "value":
                return a.as_tensor().numpy()
            if name == "value_float":
                return np.array(a.value, np.float32)
            if name == "value_floats":
                return np.array(list(a.value), np.float32)
    return None


def is_scalar(value: ir.Value | None, expected: float) -> bool:
    """``value`` is a constant with one element equal to ``expected`` (relative tolerance 1e-5)."""
    c = constant(value)
    return c is not None and c.size == 1 and math.isclose(float(c.reshape(-1)[0]), expected, rel_tol=1e-5)


F32_MAX = float(np.finfo(np.float32).max)


def quantization_constants(node: ir.Node) -> tuple[np.ndarray, np.ndarray | None] | None:
    """A QuantizeLinear's or DequantizeLinear's constant scale and zero point (None when it has none), or None: one
    of them computed at run time, or blocked quantization."""
    if int(attr(node, "block_size", 0)):
        return None
    scale = constant(node.inputs[1] if len(node.inputs) > 1 else None)
    zp_value = node.inputs[2] if len(node.inputs) > 2 else None
    zp = constant(zp_value) if zp_value is not None else None
    if scale is None or (zp_value is not None and zp is None):
        return None
    return scale, zp


def _quantized_constant(value: ir.Value | None) -> np.ndarray | None:
    """A constant, or a QuantizeLinear of a float32 constant with one scale and zero point computed as MLAS does
    (``rint(x / scale) + zero_point``, saturated; QDQ models quantize their constant operands so)."""
    c = constant(value)
    node = value.producer() if value is not None and c is None else None
    if node is None or not is_onnx(node, "QuantizeLinear") or len(node.inputs) < 3 or node.inputs[2] is None:
        return c
    x, found = constant(node.inputs[0]), quantization_constants(node)
    if x is None or found is None:
        return None
    scale, zp = found
    if zp is None or scale.size != 1 or zp.size != 1 or x.dtype != np.float32:
        return None
    if scale.dtype != np.float32 or zp.dtype not in (np.int8, np.uint8):
        return None
    info = np.iinfo(zp.dtype)
    with np.errstate(all="ignore"):
        q = np.rint(x / scale.reshape(())) + np.float32(zp.reshape(()))
    return np.clip(q, info.min, info.max).astype(zp.dtype)


def dequantized(value: ir.Value | None) -> np.ndarray | None:
    """A constant (``constant``), or a DequantizeLinear of constants (or of a QuantizeLinear of a constant) with one
    scale and zero point, or one per element of a 1-D tensor, computed as ORT does: ``float32(int32(x) - zero_point)
    * scale`` (a QDQ model's quantized bias and constant operands); else None."""
    c = constant(value)
    node = value.producer() if value is not None and c is None else None
    if node is None or not is_onnx(node, "DequantizeLinear"):
        return c
    x, found = _quantized_constant(node.inputs[0]), quantization_constants(node)
    if x is None or found is None:
        return None
    scale, zp = found[0], found[1] if found[1] is not None else np.zeros((), np.int32)
    if scale.dtype != np.float32 or not np.issubdtype(x.dtype, np.integer):
        return None
    if scale.size != 1 and not (x.ndim == 1 and scale.shape == x.shape and zp.size in (1, x.size)):
        return None
    ints = x.astype(np.int32) - zp.reshape(-1 if zp.size > 1 else ()).astype(np.int32)
    return (ints.astype(np.float32) * scale.reshape(-1 if scale.size > 1 else ())).astype(np.float32)


def clip_bounds(node: ir.Node) -> tuple[float, float] | None:
    """A Clip's (min, max): its constant inputs (opset 11+) or attributes (older), float32's range when absent;
    None when a bound is not a constant scalar."""
    lo, hi = float(attr(node, "min", -F32_MAX)), float(attr(node, "max", F32_MAX))
    for pos in (1, 2):
        if len(node.inputs) > pos and node.inputs[pos] is not None:
            c = constant(node.inputs[pos])
            if c is None or c.size != 1:
                return None
            lo, hi = (float(c.reshape(-1)[0]), hi) if pos == 1 else (lo, float(c.reshape(-1)[0]))
    return lo, hi


def dims(value: ir.Value | None) -> list[Dim] | None:
    """A value's shape as ints (static), strings (named symbolic) and None (unknown); None when the rank is unknown."""
    if value is None or value.shape is None:
        return None
    out: list[Dim] = []
    for d in value.shape:
        if isinstance(d, int):
            out.append(d)
        else:
            out.append(d.value)
    return out


def rank(value: ir.Value | None) -> int | None:
    shape = dims(value)
    return None if shape is None else len(shape)


def is_float(value: ir.Value) -> bool:
    return value.dtype == ir.DataType.FLOAT


def sole_consumer(value: ir.Value) -> ir.Node | None:
    """The only node reading ``value``, when exactly one node of the same graph reads it once and it is not a graph
    output."""
    uses = value.uses()
    if value.is_graph_output() or len(uses) != 1:
        return None
    user = next(iter(uses)).node
    return user if user.graph is value.graph else None


def other_operand(node: ir.Node, value: ir.Value) -> ir.Value | None:
    """The input of a two-input node (Add, Mul, ...) that is not ``value``."""
    return node.inputs[1] if node.inputs[0] is value else node.inputs[0]


def consumers(value: ir.Value) -> list[ir.Node]:
    """The nodes reading ``value`` (a node reading it twice is listed twice; subgraph reads name the inner node)."""
    return [u.node for u in value.uses()]


def reads(node: ir.Node) -> list[ir.Value]:
    """Every value of an enclosing graph ``node`` reads: its inputs and what its subgraphs read from outside."""
    out = [v for v in node.inputs if v is not None]
    for a in node.attributes.values():
        if not isinstance(a, ir.Attr):
            continue
        graphs = [a.value] if a.type == ir.AttributeType.GRAPH else a.value if a.type == ir.AttributeType.GRAPHS else []
        for g in graphs:
            inner = set(g.inputs) | set(g.initializers.values())
            for n in g:
                out.extend(v for v in reads(n) if v not in inner)
                inner.update(n.outputs)
    return out


def stable_topo_sort(graph: ir.Graph) -> None:
    """Reorder the nodes topologically, keeping the existing order where it is valid: sweep the list and take every
    node whose inputs are available, until none is left (onnx-ir's own sort moves untouched nodes)."""
    available = set(graph.inputs) | set(graph.initializers.values())
    pending = list(graph)
    ordered: list[ir.Node] = []
    while pending:
        rest = []
        for node in pending:
            if all(v in available or v.producer() is None for v in reads(node)):
                ordered.append(node)
                available.update(node.outputs)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            missing = sorted({str(v.name) for n in rest for v in reads(n) if v not in available})[:3]
            raise ValueError(f"graph has a cycle or undefined inputs {missing}")
        pending = rest
    if ordered != list(graph):
        graph.remove(ordered)
        graph.extend(ordered)


def initializer(graph: ir.Graph, name: str, value: np.ndarray) -> ir.Value:
    """Register ``value`` (its own dtype, C order) as the initializer ``name`` and return it."""
    array = np.ascontiguousarray(value)
    tensor = ir.tensor(array, name=name)
    v = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(tensor.dtype), const_value=tensor)
    graph.register_initializer(v)
    return v


def remove_unused_initializers(graph: ir.Graph) -> None:
    """Drop initializers that no node of the graph (its subgraphs included) and no graph output reads any more."""
    live = set(ir.traversal.RecursiveGraphIterator(graph))
    for name, value in list(graph.initializers.items()):
        used = any(u.node in live for u in value.uses())
        if not used and not value.is_graph_output() and not value.is_graph_input():
            del graph.initializers[name]


def remove_dead_constants(graph: ir.Graph) -> None:
    """Drop Constant, QuantizeLinear and DequantizeLinear nodes whose outputs nothing reads (fused epilogues leave
    their scalars and a QDQ model's quantized constants behind; the ops have no effect besides their outputs)."""
    changed = True
    while changed:
        changed = False
        for node in list(graph):
            dead_kind = any(is_onnx(node, op) for op in ("Constant", "QuantizeLinear", "DequantizeLinear"))
            if dead_kind and not any(o.uses() or o.is_graph_output() for o in node.outputs):
                graph.remove(node, safe=True)
                changed = True


def to_proto(model: ir.Model, source: onnx.ModelProto) -> onnx.ModelProto:
    """The model as protobuf, written the way the protobuf pipeline wrote it from ``source`` (the loaded model):
    value_info only for values nodes produce, in ``source``'s order (onnx-ir also writes one per initializer, which
    the tensor already describes), and ``source``'s own opset_import entries."""
    proto = ir.to_proto(model)
    g = proto.graph
    order = {v.name: i for i, v in enumerate(source.graph.value_info)}
    produced = {o for n in g.node for o in n.output}
    keep = [v for v in g.value_info if v.name in produced]
    keep.sort(key=lambda v: order.get(v.name, len(order)))
    del g.value_info[:]
    g.value_info.extend(keep)
    originals = {(o.domain, o.version): o for o in source.opset_import}
    opsets = [originals.get((o.domain, o.version), o) for o in proto.opset_import]
    del proto.opset_import[:]
    proto.opset_import.extend(opsets)
    return proto


def _has_map(t: onnx.TypeProto) -> bool:
    kind = t.WhichOneof("value")
    if kind == "map_type":
        return True
    if kind == "sequence_type":
        return _has_map(t.sequence_type.elem_type)
    if kind == "optional_type":
        return _has_map(t.optional_type.elem_type)
    return False


def hide_map_types(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, onnx.TypeProto]]:
    """A copy of ``model`` without the map types onnx-ir 1.1 cannot read (ai.onnx.ml ZipMap & co. produce
    sequence<map<...>>): graph inputs and outputs keep their name with no type, value_info entries go; and the
    types removed, by value name, for :func:`restore_types`. ``model`` itself is returned when it has none."""
    g = model.graph
    if not any(_has_map(v.type) for v in [*g.input, *g.output, *g.value_info]):
        return model, {}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    saved: dict[str, onnx.TypeProto] = {}
    for v in [*out.graph.input, *out.graph.output]:
        if _has_map(v.type):
            saved[v.name] = onnx.TypeProto()
            saved[v.name].CopyFrom(v.type)
            v.ClearField("type")
    keep = [v for v in out.graph.value_info if not _has_map(v.type)]
    del out.graph.value_info[:]
    out.graph.value_info.extend(keep)
    return out, saved


def restore_types(proto: onnx.ModelProto, saved: dict[str, onnx.TypeProto]) -> onnx.ModelProto:
    """Put the types :func:`hide_map_types` removed back on the graph inputs and outputs of ``proto``."""
    for v in [*proto.graph.input, *proto.graph.output]:
        if v.name in saved:
            v.type.CopyFrom(saved[v.name])
    return proto
