"""Shrink: drop channels that carry nothing between two layers, so both become smaller ops. Graph outputs unchanged.

A *pair* is a producer P (MatMul with a constant B[K, N], or a group=1 Conv with a constant weight) whose output
reaches a consumer C of the same kind (its operand 0) only through single-consumer values, through at most three
bias Adds (a scalar or one value per channel) and unary activations (Relu, Sigmoid, HardSwish, Clip with constant
bounds), never through a graph output.
A channel n of that value can go when
- C never reads it: C's weight is all zero for input n (MatMul row n of B; Conv input channel n), or
- it is exactly zero whatever the input: P's weight row n is all zero and the chain maps its bias (0 without one)
  to 0 (e.g. no bias and Relu), so C's contribution from it is zero too.
Then P loses output n (weight, bias and the per-channel Add constants) and C loses input n. Sums lose only
exact-zero terms, so results are the same bits except where P produced Inf/NaN (0 * Inf). Weights shared with other
nodes are left alone, and so is a consumer whose weight has an N:M structure (removing inputs would shift its
groups out of line).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

from .graph import attr, clip_bounds, constant, other_operand, sole_consumer, to_proto
from .state import Compilation

UNARY = ("Relu", "Sigmoid", "HardSwish", "Clip")


def _act(node: ir.Node, x: np.ndarray) -> np.ndarray | None:
    """The activation applied to constant values x (None when its constants are not known)."""
    if node.op_type == "Relu":
        return np.maximum(x, 0)
    if node.op_type == "Sigmoid":
        return 1 / (1 + np.exp(-x))
    if node.op_type == "HardSwish":
        return x * np.clip(x / 6 + 0.5, 0, 1)
    bounds = clip_bounds(node)
    return None if bounds is None else np.clip(x, *bounds)


def _kind(node: ir.Node) -> str:
    """'matmul' | 'conv' when the node's operand 1 is a float32 constant initializer of the supported shape."""
    if node.domain not in ("", "ai.onnx") or len(node.inputs) < 2:
        return ""
    b = node.inputs[1]
    if b is None or not b.is_initializer():
        return ""
    w = constant(b)
    if w is None or w.dtype != np.float32:
        return ""
    if node.op_type == "MatMul" and w.ndim == 2:
        return "matmul"
    if node.op_type == "Conv" and w.ndim == 4 and int(attr(node, "group", 1)) == 1:
        return "conv"
    return ""


def _owned(value: ir.Value | None, node: ir.Node) -> bool:
    """An initializer only this node reads (so editing it changes nothing else)."""
    return (
        value is not None
        and value.is_initializer()
        and all(u.node is node for u in value.uses())
        and not value.is_graph_output()
    )


def _chain(p: ir.Node) -> tuple[list[ir.Node], ir.Node] | None:
    """(activations between P and C, C) when P's output reaches a same-kind layer as described above."""
    acts: list[ir.Node] = []
    cur = p.outputs[0]
    while True:
        nxt = sole_consumer(cur)
        if nxt is None:
            return None
        ours = nxt.domain in ("", "ai.onnx") and len(acts) < 3
        bias_add = nxt.op_type == "Add" and constant(other_operand(nxt, cur)) is not None
        if ours and (nxt.op_type in UNARY and nxt.inputs[0] is cur or bias_add):
            acts.append(nxt)
            cur = nxt.outputs[0]
            continue
        if nxt.inputs[0] is cur and _kind(nxt) == _kind(p):
            return acts, nxt
        return None


def _channel_const(c: np.ndarray, n: int, kind: str) -> bool:
    """A constant holding one value per channel: [.., N] for matmul, [.., N, 1, 1] for conv (NCHW)."""
    return c.size == n and c.ndim >= (3 if kind == "conv" else 1) and c.shape[-3 if kind == "conv" else -1] == n


def _replace(value: ir.Value, array: np.ndarray) -> None:
    value.const_value = ir.tensor(np.ascontiguousarray(array), name=value.name)
    value.shape = ir.Shape(array.shape)


def _keeps_nm(wc: np.ndarray, kind: str) -> bool:
    """Whether C's weight has an N:M structure along its inputs, which removing inputs would shift out of line."""
    from sparsec.formats import NM_PATTERNS, get_format

    w = wc.T if kind == "matmul" else wc.reshape(wc.shape[0], -1)
    if w.size == 0 or np.count_nonzero(w) == w.size:
        return False
    return any(get_format(f"nm:{n}:{m}").conformity(w) == 1.0 for n, m in NM_PATTERNS)  # type: ignore[attr-defined]


def _shrink_pair(p: ir.Node, changed: dict[str, tuple[int, tuple[int, ...]]]) -> str:
    """Shrink the pair starting at ``p`` if there is one; the line that says what was removed ("" when nothing).
    ``changed`` gets each narrowed value: its channel axis and the original channels it keeps."""
    kind = _kind(p)
    found = _chain(p) if kind else None
    if found is None:
        return ""
    acts, c = found
    bias_v = p.inputs[2] if kind == "conv" and len(p.inputs) > 2 and p.inputs[2] is not None else None
    if not (_owned(p.inputs[1], p) and _owned(c.inputs[1], c)) or (bias_v is not None and not _owned(bias_v, p)):
        return ""
    wp, wc = constant(p.inputs[1]), constant(c.inputs[1])
    bias = constant(bias_v) if bias_v is not None else None
    assert wp is not None and wc is not None
    if kind == "matmul":  # B[K, N]: output n is column n of P's B, input n is row n of C's B
        out_zero = ~wp.any(axis=0)
        unread = ~wc.any(axis=1)
    else:  # weight [Cout, Cin, kh, kw]
        out_zero = ~wp.reshape(wp.shape[0], -1).any(axis=1)
        unread = ~wc.transpose(1, 0, 2, 3).reshape(wc.shape[1], -1).any(axis=1)
    if out_zero.shape != unread.shape or _keeps_nm(wc, kind):
        return ""
    value: np.ndarray | None = np.zeros(out_zero.shape) if bias is None else bias.reshape(-1).astype(np.float64)
    adds: list[ir.Value] = []  # per-channel Add constants that must shrink with the channels
    cur = p.outputs[0]
    for a in acts:
        into, cur = cur, a.outputs[0]
        if a.op_type != "Add":
            value = None if value is None else _act(a, value)
            continue
        other = other_operand(a, into)
        const = constant(other)
        assert const is not None and other is not None
        if const.size == 1:
            value = None if value is None else value + float(const.reshape(-1)[0])
        elif _channel_const(const, out_zero.size, kind) and _owned(other, a):
            value = None if value is None else value + const.reshape(-1)
            adds.append(other)
        else:
            return ""
    dead = unread | (out_zero & (value == 0) if value is not None else np.zeros_like(unread))
    if not dead.any() or dead.all():
        return ""
    keep = np.flatnonzero(~dead)
    wp_v, wc_v = p.inputs[1], c.inputs[1]
    assert wp_v is not None and wc_v is not None
    if kind == "matmul":
        _replace(wp_v, wp[:, keep])
        _replace(wc_v, wc[keep, :])
    else:
        _replace(wp_v, wp[keep])
        _replace(wc_v, wc[:, keep])
        if bias is not None and bias_v is not None:
            _replace(bias_v, bias.reshape(-1)[keep])
    for v in adds:
        const = constant(v)
        assert const is not None
        _replace(v, np.take(const, keep, axis=const.ndim - (3 if kind == "conv" else 1)))
    axis = -1 if kind == "matmul" else 1
    for v in [p.outputs[0]] + [a.outputs[0] for a in acts]:
        changed[str(v.name)] = (axis, tuple(int(i) for i in keep))
    p_name = p.name or p.outputs[0].name
    c_name = c.name or c.outputs[0].name
    return f"{p_name} -> {c_name}: {int(dead.sum())} of {dead.size} channels removed"


class ShrinkPass(ir.passes.InPlacePass):
    """Shrink every qualifying pair. When something shrank, the shapes of the values between the two layers are
    inferred again (onnx's shape inference works on protobuf: the model goes there and back once) and their
    value_info moves to the end, as onnx's inference writes it (``Compilation.source``)."""

    def __init__(self, state: Compilation) -> None:
        super().__init__()
        self.state = state

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        changed: dict[str, tuple[int, tuple[int, ...]]] = {}
        done = [line for p in list(model.graph) if (line := _shrink_pair(p, changed))]
        self.state.narrowed.update(changed)
        for line in done:
            self.state.say(f"shrunk {line}")
        if not done:
            return ir.passes.PassResult(model, modified=False)
        proto = to_proto(model, self.state.source)
        keep_vi = [v for v in proto.graph.value_info if v.name not in changed]
        del proto.graph.value_info[:]
        proto.graph.value_info.extend(keep_vi)
        proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
        values = {str(o.name): o for n in model.graph for o in n.outputs}
        for vi in proto.graph.value_info:
            if vi.name in values:
                ir.serde.deserialize_value_info_proto(vi, values[vi.name])
        self.state.source = proto
        return ir.passes.PassResult(model, modified=True)
