"""Fuse: fold the epilogue that follows a sparsec node into it: ``Y = act(X @ W^T + bias + residual)``.

Matched after each sparsec node, in this order and only through values with a single consumer (never a graph
output): Adds of a constant broadcastable to [N] (bias, summed into one), one Add of a tensor with exactly Y's
shape (residual), then one activation: Relu, Sigmoid, Clip with constant bounds (Relu6), HardSwish, SiLU/Swish
(``x * Sigmoid(x)``), ``x * HardSigmoid(x)`` with HardSwish's constants, Gelu (opset 20 or com.microsoft, exact
form) or the Erf formulation PyTorch exports (``x * 0.5 * (1 + erf(x / sqrt 2))`` in its usual operand orders).
For a conv (NCHW) a bias constant must broadcast per channel ([N, 1, 1] or [1, N, 1, 1]). Nothing is fused after
the activation.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper

from sparsec.node import SparseNodeInfo, node_attributes

from .graph import GraphIndex, attr, node_reads, remove_unused_initializers, sparse_info, topo_sort

F32_MAX = float(np.finfo(np.float32).max)


def _is(node: onnx.NodeProto | None, op: str) -> bool:
    return node is not None and node.op_type == op and node.domain in ("", "ai.onnx")


def _scalar(idx: GraphIndex, name: str, value: float) -> bool:
    c = idx.constant(name)
    return c is not None and c.size == 1 and math.isclose(float(c.reshape(-1)[0]), value, rel_tol=1e-5)


def _other(node: onnx.NodeProto, name: str) -> str:
    a, b = node.input[0], node.input[1]
    return b if a == name else a


class _Fused:
    """The sparsec node being grown, its config and extra inputs."""

    def __init__(self, node: onnx.NodeProto, info: SparseNodeInfo, model: onnx.ModelProto) -> None:
        self.node, self.info, self.model = node, info, model
        n_arrays = len(node.input) - 1 - int(info.bias) - int(info.residual)
        self.base = list(node.input[: 1 + n_arrays])
        self.bias_name = node.input[1 + n_arrays] if info.bias else ""
        self.residual_name = node.input[-1] if info.residual else ""
        self.removed: list[onnx.NodeProto] = []
        self.steps: list[str] = []

    @property
    def out(self) -> str:
        return self.node.output[0]

    def absorb(self, nodes: list[onnx.NodeProto], out: str, step: str) -> None:
        self.removed.extend(nodes)
        self.node.output[0] = out
        self.steps.append(step)

    def add_bias(self, value: np.ndarray) -> None:
        inits = {t.name: t for t in self.model.graph.initializer}
        if self.info.bias:
            old = inits[self.bias_name]
            value = numpy_helper.to_array(old) + value
            name = self.bias_name
            self.model.graph.initializer.remove(old)
        else:
            name = f"{_layer(self.node)}__bias"
            while name in inits:
                name += "_"
        self.model.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
        self.bias_name = name
        self.info = self.info.with_updates(bias=True)

    def finish(self) -> None:
        inputs = (
            self.base
            + ([self.bias_name] if self.info.bias else [])
            + ([self.residual_name] if self.info.residual else [])
        )
        del self.node.input[:]
        self.node.input.extend(inputs)
        attrs = node_attributes(self.info, _layer(self.node), _notes(self.node, self.steps))
        del self.node.attribute[:]
        self.node.attribute.extend(onnx.helper.make_attribute(k, v) for k, v in attrs.items())


def _layer(node: onnx.NodeProto) -> str:
    return str(attr(node, "partition_name", node.name))


def _notes(node: onnx.NodeProto, steps: list[str]) -> str:
    base = str(attr(node, "notes", "")).split(" + epilogue:")[0]
    return base + (" + epilogue: " + ", ".join(steps) if steps else "")


def _bias_value(idx: GraphIndex, other: str, n: int, y_rank: int | None, conv: bool) -> np.ndarray | None:
    """A constant that broadcasts to one value per output feature: [.., N] (matmul) or [.., N, 1, 1] (NCHW conv)."""
    c = idx.constant(other)
    if c is None or c.dtype != np.float32 or y_rank is None or c.ndim > y_rank:
        return None
    if c.size == 1:
        return np.full(n, float(c.reshape(-1)[0]), np.float32)
    channel = c.ndim >= 3 and c.shape[-3:] == (n, 1, 1) if conv else c.shape[-1] == n
    if channel and c.size == n:
        return c.reshape(n).astype(np.float32)
    return None


def _try_add(f: _Fused, idx: GraphIndex, y_rank: int | None) -> bool:
    add = idx.sole_consumer(f.out)
    if not _is(add, "Add") or f.info.act != "none":
        return False
    assert add is not None
    other = _other(add, f.out)
    if other == f.out:
        return False
    conv = f.info.op == "conv"
    bias = _bias_value(idx, other, f.info.N, y_rank, conv) if not f.info.residual else None
    if bias is not None:
        f.add_bias(bias)
        f.absorb([add], add.output[0], "bias")
        return True
    if f.info.residual or idx.constant(other) is not None:
        return False
    ys, rs = idx.shapes.get(f.out), idx.shapes.get(other)
    if ys is None or rs != ys or any(d is None for d in ys) or idx.dtypes.get(other) != onnx.TensorProto.FLOAT:
        return False
    f.residual_name = other
    f.info = f.info.with_updates(residual=True)
    f.absorb([add], add.output[0], "residual")
    return True


def _clip_bounds(idx: GraphIndex, node: onnx.NodeProto) -> tuple[float, float] | None:
    lo, hi = attr(node, "min", -F32_MAX), attr(node, "max", F32_MAX)
    for pos in (1, 2):
        if len(node.input) > pos and node.input[pos]:
            c = idx.constant(node.input[pos])
            if c is None or c.size != 1:
                return None
            value = float(c.reshape(-1)[0])
            lo, hi = (value, hi) if pos == 1 else (lo, value)
    return float(lo), float(hi)  # type: ignore[arg-type]


def _erf_gelu(idx: GraphIndex, y: str) -> tuple[list[onnx.NodeProto], str] | None:
    """Match ``0.5 * y * (1 + erf(y / sqrt(2)))`` hanging off ``y``; returns (nodes, output)."""
    users = idx.consumers.get(y, [])
    if y in idx.graph_outputs or len(users) != 2:
        return None
    scale = next((u for u in users if (_is(u, "Div") and u.input[0] == y and _scalar(idx, u.input[1], math.sqrt(2)))
                  or (_is(u, "Mul") and _scalar(idx, _other(u, y), 1 / math.sqrt(2)))), None)  # fmt: skip
    if scale is None:
        return None
    mul = next(u for u in users if u is not scale)
    erf = idx.sole_consumer(scale.output[0])
    if not _is(erf, "Erf"):
        return None
    assert erf is not None
    plus = idx.sole_consumer(erf.output[0])
    if not _is(plus, "Add") or not _scalar(idx, _other(plus, erf.output[0]), 1.0):
        return None
    assert plus is not None
    a = plus.output[0]
    chain = [scale, erf, plus]
    if not _is(mul, "Mul"):
        return None
    other = _other(mul, y)
    nxt = idx.sole_consumer(mul.output[0])
    if other == a:  # (y * a) * 0.5
        if _is(nxt, "Mul") and _scalar(idx, _other(nxt, mul.output[0]), 0.5):  # type: ignore[arg-type]
            return chain + [mul, nxt], nxt.output[0]  # type: ignore[union-attr, list-item]
        return None
    if _scalar(idx, other, 0.5):  # (y * 0.5) * a
        if _is(nxt, "Mul") and _other(nxt, mul.output[0]) == a and idx.sole_consumer(a) is nxt:  # type: ignore[arg-type]
            return chain + [mul, nxt], nxt.output[0]  # type: ignore[union-attr, list-item]
        return None
    half = idx.producer.get(other)  # y * (a * 0.5)
    if _is(half, "Mul") and idx.sole_consumer(a) is half and idx.sole_consumer(other) is mul:
        assert half is not None
        if _scalar(idx, _other(half, a), 0.5):
            return chain + [half, mul], mul.output[0]
    return None


def _silu(idx: GraphIndex, y: str) -> tuple[list[onnx.NodeProto], str] | None:
    """Match ``y * sigmoid(y)`` (SiLU / Swish as exported: Sigmoid and Mul both reading y) or
    ``y * HardSigmoid(y, 1/6, 1/2)`` (HardSwish as older exports write it); returns (nodes, output)."""
    users = idx.consumers.get(y, [])
    if y in idx.graph_outputs or len(users) != 2:
        return None
    gate = next((u for u in users if _is(u, "Sigmoid") or _is(u, "HardSigmoid")), None)
    mul = next((u for u in users if u is not gate), None)
    if gate is None or mul is None or not _is(mul, "Mul") or gate.input[0] != y:
        return None
    if _is(gate, "HardSigmoid") and not (
        math.isclose(float(attr(gate, "alpha", 0.2)), 1 / 6, rel_tol=1e-5)  # type: ignore[arg-type]
        and math.isclose(float(attr(gate, "beta", 0.5)), 0.5, rel_tol=1e-5)  # type: ignore[arg-type]
    ):
        return None
    if sorted(mul.input) != sorted([y, gate.output[0]]) or idx.sole_consumer(gate.output[0]) is not mul:
        return None
    return [gate, mul], mul.output[0]


def _try_act(f: _Fused, idx: GraphIndex) -> bool:
    if f.info.act != "none":
        return False
    gelu = _erf_gelu(idx, f.out)
    if gelu is not None:
        f.info = f.info.with_updates(act="gelu")
        f.absorb(gelu[0], gelu[1], "gelu (erf form)")
        return True
    silu = _silu(idx, f.out)
    if silu is not None:
        act = "silu" if silu[0][0].op_type == "Sigmoid" else "hardswish"
        f.info = f.info.with_updates(act=act)
        f.absorb(silu[0], silu[1], f"{act} (x * {silu[0][0].op_type.lower()}(x))")
        return True
    nxt = idx.sole_consumer(f.out)
    if nxt is None or nxt.input[0] != f.out:
        return False
    if _is(nxt, "Relu") or _is(nxt, "Sigmoid") or _is(nxt, "HardSwish"):
        f.info = f.info.with_updates(act=nxt.op_type.lower())
    elif _is(nxt, "Clip") and (bounds := _clip_bounds(idx, nxt)) is not None:
        f.info = f.info.with_updates(act="clip", clip_min=bounds[0], clip_max=bounds[1])
    elif (
        nxt.op_type == "Gelu"
        and nxt.domain in ("", "ai.onnx", "com.microsoft")
        and attr(nxt, "approximate", "none") == "none"
    ):
        f.info = f.info.with_updates(act="gelu")
    else:
        return False
    f.absorb([nxt], nxt.output[0], f.info.act)
    return True


def fuse(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Fuse epilogues into every sparsec node; returns layer -> fused steps."""
    done: dict[str, list[str]] = {}
    for node in list(model.graph.node):
        info = sparse_info(node)
        if info is None:
            continue
        f = _Fused(node, info, model)
        rank = GraphIndex(model).rank(node.input[0])
        while True:
            idx = GraphIndex(model)
            if not (_try_add(f, idx, rank) or _try_act(f, idx)):
                break
            _drop(model, f.removed)
            f.removed = []
        f.finish()
        done[_layer(node)] = f.steps
    _drop_dead_constants(model)
    remove_unused_initializers(model.graph)
    _drop_stale_value_info(model)
    topo_sort(model.graph)
    return done


def _drop(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> None:
    """Remove fused nodes one by one (rebuilding the list would detach the node being grown)."""
    for n in nodes:
        model.graph.node.remove(n)


def _drop_dead_constants(model: onnx.ModelProto) -> None:
    while True:
        used = {i for n in model.graph.node for i in node_reads(n)} | {o.name for o in model.graph.output}
        keep = [n for n in model.graph.node if n.op_type != "Constant" or any(o in used for o in n.output)]
        if len(keep) == len(model.graph.node):
            return
        del model.graph.node[:]
        model.graph.node.extend(keep)


def _drop_stale_value_info(model: onnx.ModelProto) -> None:
    live = {o for n in model.graph.node for o in n.output}
    keep = [v for v in model.graph.value_info if v.name in live]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)
