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
from onnx import numpy_helper

from .graph import GraphIndex, attr

UNARY = ("Relu", "Sigmoid", "HardSwish", "Clip")


def _act(node: onnx.NodeProto, idx: GraphIndex, x: np.ndarray) -> np.ndarray | None:
    """The activation applied to constant values x (None when its constants are not known)."""
    if node.op_type == "Relu":
        return np.maximum(x, 0)
    if node.op_type == "Sigmoid":
        return 1 / (1 + np.exp(-x))
    if node.op_type == "HardSwish":
        return x * np.clip(x / 6 + 0.5, 0, 1)
    lo, hi = -np.inf, np.inf
    for pos in (1, 2):
        if len(node.input) > pos and node.input[pos]:
            c = idx.constant(node.input[pos])
            if c is None or c.size != 1:
                return None
            lo, hi = (float(c.reshape(-1)[0]), hi) if pos == 1 else (lo, float(c.reshape(-1)[0]))
    return np.clip(x, lo, hi)


def _kind(node: onnx.NodeProto, idx: GraphIndex) -> str:
    """'matmul' | 'conv' when the node's operand 1 is a float32 constant initializer of the supported shape."""
    if node.domain not in ("", "ai.onnx") or len(node.input) < 2 or node.input[1] not in idx.initializers:
        return ""
    w = idx.constant(node.input[1])
    if w is None or w.dtype != np.float32:
        return ""
    if node.op_type == "MatMul" and w.ndim == 2:
        return "matmul"
    if node.op_type == "Conv" and w.ndim == 4 and int(attr(node, "group", 1)) == 1:  # type: ignore[arg-type]
        return "conv"
    return ""


def _owned(name: str, node: onnx.NodeProto, idx: GraphIndex) -> bool:
    """An initializer only this node reads (so editing it changes nothing else)."""
    return (
        name in idx.initializers
        and all(u is node for u in idx.consumers.get(name, []))
        and name not in idx.graph_outputs
    )


def _chain(p: onnx.NodeProto, idx: GraphIndex) -> tuple[list[onnx.NodeProto], onnx.NodeProto] | None:
    """(activations between P and C, C) when P's output reaches a same-kind layer as described above."""
    acts: list[onnx.NodeProto] = []
    cur = p.output[0]
    while True:
        nxt = idx.sole_consumer(cur)
        if nxt is None:
            return None
        ours = nxt.domain in ("", "ai.onnx") and len(acts) < 3
        bias_add = nxt.op_type == "Add" and idx.constant(_other(nxt, cur)) is not None
        if ours and (nxt.op_type in UNARY and nxt.input[0] == cur or bias_add):
            acts.append(nxt)
            cur = nxt.output[0]
            continue
        if nxt.input[0] == cur and _kind(nxt, idx) == _kind(p, idx):
            return acts, nxt
        return None


def _other(node: onnx.NodeProto, name: str) -> str:
    return node.input[1] if node.input[0] == name else node.input[0]


def _channel_const(c: np.ndarray, n: int, kind: str) -> bool:
    """A constant holding one value per channel: [.., N] for matmul, [.., N, 1, 1] for conv (NCHW)."""
    return c.size == n and c.ndim >= (3 if kind == "conv" else 1) and c.shape[-3 if kind == "conv" else -1] == n


def _replace(model: onnx.ModelProto, idx: GraphIndex, name: str, value: np.ndarray) -> None:
    init = idx.initializers[name]
    init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(value), name))


def _keeps_nm(wc: np.ndarray, kind: str) -> bool:
    """Whether C's weight has an N:M structure along its inputs, which removing inputs would shift out of line."""
    from sparsec.formats import NM_PATTERNS, get_format

    w = wc.T if kind == "matmul" else wc.reshape(wc.shape[0], -1)
    if w.size == 0 or np.count_nonzero(w) == w.size:
        return False
    return any(get_format(f"nm:{n}:{m}").conformity(w) == 1.0 for n, m in NM_PATTERNS)


def shrink(model: onnx.ModelProto) -> list[str]:
    """Shrink every qualifying pair in place; returns one line per shrunk pair (empty: the model is unchanged)."""
    done: list[str] = []
    changed_values: set[str] = set()
    for p in list(model.graph.node):
        idx = GraphIndex(model)
        kind = _kind(p, idx)
        found = _chain(p, idx) if kind else None
        if found is None:
            continue
        acts, c = found
        bias_name = p.input[2] if kind == "conv" and len(p.input) > 2 and p.input[2] else ""
        if not (_owned(p.input[1], p, idx) and _owned(c.input[1], c, idx)) or (
            bias_name and not _owned(bias_name, p, idx)
        ):
            continue
        wp, wc = idx.constant(p.input[1]), idx.constant(c.input[1])
        bias = idx.constant(bias_name) if bias_name else None
        assert wp is not None and wc is not None
        if kind == "matmul":  # B[K, N]: output n is column n of P's B, input n is row n of C's B
            out_zero = ~wp.any(axis=0)
            unread = ~wc.any(axis=1)
        else:  # weight [Cout, Cin, kh, kw]
            out_zero = ~wp.reshape(wp.shape[0], -1).any(axis=1)
            unread = ~wc.transpose(1, 0, 2, 3).reshape(wc.shape[1], -1).any(axis=1)
        if out_zero.shape != unread.shape or _keeps_nm(wc, kind):
            continue
        value: np.ndarray | None = np.zeros(out_zero.shape) if bias is None else bias.reshape(-1).astype(np.float64)
        adds: list[str] = []  # per-channel Add constants that must shrink with the channels
        cur = p.output[0]
        for a in acts:
            into, cur = cur, a.output[0]
            if a.op_type != "Add":
                value = None if value is None else _act(a, idx, value)
                continue
            name = _other(a, into)
            const = idx.constant(name)
            assert const is not None
            if const.size == 1:
                value = None if value is None else value + float(const.reshape(-1)[0])
            elif _channel_const(const, out_zero.size, kind) and _owned(name, a, idx):
                value = None if value is None else value + const.reshape(-1)
                adds.append(name)
            else:
                value, dead_ok = None, False
                break
        else:
            dead_ok = True
        if not dead_ok:
            continue
        dead = unread | (out_zero & (value == 0) if value is not None else np.zeros_like(unread))
        if not dead.any() or dead.all():
            continue
        keep = np.flatnonzero(~dead)
        if kind == "matmul":
            _replace(model, idx, p.input[1], wp[:, keep])
            _replace(model, idx, c.input[1], wc[keep, :])
        else:
            _replace(model, idx, p.input[1], wp[keep])
            _replace(model, idx, c.input[1], wc[:, keep])
            if bias is not None:
                _replace(model, idx, bias_name, bias.reshape(-1)[keep])
        for name in adds:
            const = idx.constant(name)
            assert const is not None
            axis = const.ndim - (3 if kind == "conv" else 1)
            _replace(model, idx, name, np.take(const, keep, axis=axis))
        changed_values.update([p.output[0]] + [a.output[0] for a in acts])
        done.append(
            f"{p.name or p.output[0]} -> {c.name or c.output[0]}: {int(dead.sum())} of {dead.size} channels removed"
        )
    if done:
        keep_vi = [v for v in model.graph.value_info if v.name not in changed_values]
        del model.graph.value_info[:]
        model.graph.value_info.extend(keep_vi)
        model.CopyFrom(onnx.shape_inference.infer_shapes(model, strict_mode=True))
    return done
