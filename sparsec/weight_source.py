"""Where a layer's weight is stored, for ``sparsec prune``: the tensor (an initializer or a Constant node's value) and
the chain of nodes between it and the layer (Identity, Cast, Transpose, DequantizeLinear), as exporters and
``onnxruntime.quantization`` write them; compile folds the same chains (passes/constants.py).

Pruning ranks the weight *as the layer sees it* (the chain applied) and zeroes the stored tensor where that weight
is zeroed: transposes map positions back, a DequantizeLinear source gets its zero point (so the dequantized value is
exactly 0), any other source gets 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

PASS_THROUGH = ("Identity", "Cast", "Transpose", "DequantizeLinear")
_FLOATS = tuple(np.dtype(t) for t in (np.float16, np.float32, np.float64))
_INTS = tuple(np.dtype(t) for t in (np.int8, np.uint8, np.int16, np.uint16))
MAX_CHAIN = 8


@dataclass(frozen=True)
class Step:
    """One node of the chain: ``op`` with its Transpose ``perm`` or DequantizeLinear scale / zero point / axis."""

    op: str
    perm: tuple[int, ...] = ()
    scale: np.ndarray | None = None
    zero: np.ndarray | None = None
    axis: int = 1
    dtype: np.dtype = np.dtype(np.float32)  # what a Cast or DequantizeLinear makes


@dataclass
class WeightSource:
    """A stored tensor and the steps (source first) that turn it into the layer's weight."""

    name: str  # the stored value's name in the graph
    tensor: onnx.TensorProto
    steps: list[Step] = field(default_factory=list)

    def effective(self) -> np.ndarray:
        """The weight as the layer sees it (float32)."""
        a = numpy_helper.to_array(self.tensor)
        for s in self.steps:
            if s.op == "Transpose":
                a = np.transpose(a, s.perm)
            elif s.op == "DequantizeLinear":
                assert s.scale is not None and s.zero is not None
                a = (a.astype(np.float64) - _along(s.zero, s.axis, a.ndim)) * _along(s.scale, s.axis, a.ndim)
            a = np.asarray(a, np.float32) if a.dtype.kind == "f" else a
        return np.asarray(a, np.float32)

    def write(self, keep: np.ndarray) -> None:
        """Zero the stored tensor wherever ``keep`` (in the layer's layout) is False."""
        for s in reversed(self.steps):
            if s.op == "Transpose":
                keep = np.transpose(keep, np.argsort(s.perm))
        stored = numpy_helper.to_array(self.tensor)
        zero = np.zeros((), stored.dtype)
        dq = next((s for s in self.steps if s.op == "DequantizeLinear"), None)
        if dq is not None:  # the source is the quantized tensor (only Transposes / Identities before the dequantize)
            assert dq.zero is not None
            zero = np.broadcast_to(_along(dq.zero, _axis_at_source(self.steps, dq), stored.ndim), stored.shape)
        new = numpy_helper.from_array(np.where(keep, stored, zero).astype(stored.dtype), self.tensor.name)
        new.doc_string = self.tensor.doc_string
        self.tensor.CopyFrom(new)


def _along(v: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """A DequantizeLinear scale / zero point broadcastable over a rank-``ndim`` tensor (per tensor or per axis)."""
    if v.ndim == 0 or v.size == 1:
        return v.reshape(())
    shape = [1] * ndim
    shape[axis] = v.size
    return v.reshape(shape)


def _axis_at_source(steps: list[Step], dq: Step) -> int:
    """The DequantizeLinear axis in the stored tensor's layout (Transposes before it permute axes)."""
    axis = dq.axis
    for s in reversed(steps[: steps.index(dq)]):
        if s.op == "Transpose":
            axis = s.perm[axis]
    return axis


def stored_tensors(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """The graph's stored tensors by value name: initializers and Constant nodes' ``value`` (paddle2onnx and others
    keep every weight in Constant nodes)."""
    stored = {t.name: t for t in graph.initializer}
    stored.update(
        (n.output[0], a.t)
        for n in graph.node
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and n.output
        for a in n.attribute
        if a.name == "value"
    )
    return stored


def find_source(
    value: str, producers: dict[str, onnx.NodeProto], stored: dict[str, onnx.TensorProto]
) -> WeightSource | None:
    """The stored tensor behind ``value`` through at most MAX_CHAIN pass-through nodes, or None: computed otherwise,
    a non-default domain, blocked quantization, a DequantizeLinear whose scale or zero point is not stored, or
    types that do not end in a float32 weight (the only weight type compile makes sparse)."""
    steps: list[Step] = []
    while value not in stored:
        node = producers.get(value)
        if node is None or node.op_type not in PASS_THROUGH or node.domain not in ("", "ai.onnx"):
            return None
        if len(steps) >= MAX_CHAIN:
            return None
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Transpose":
            steps.append(Step("Transpose", tuple(int(p) for p in attrs.get("perm", ()))))
        elif node.op_type == "DequantizeLinear":
            step = _dequantize(node, attrs, stored)
            if step is None:
                return None
            steps.append(step)
        elif node.op_type == "Cast":
            steps.append(Step("Cast", dtype=np.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(attrs["to"])))))
        value = node.input[0]
    source = WeightSource(value, stored[value], steps[::-1])
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(source.tensor.data_type))
    for s in source.steps:  # the type each step makes, checked against what the next one takes
        if s.op == "DequantizeLinear":
            if dtype not in _INTS:
                return None
            dtype = s.dtype
        elif s.op == "Cast":
            if dtype not in _FLOATS or s.dtype not in _FLOATS:
                return None
            dtype = s.dtype
    if dtype != np.float32:
        return None
    rank = max(len(source.tensor.dims), 1)  # Transposes keep the rank: resolve defaults and negative axes with it
    source.steps = [
        Step("Transpose", s.perm or tuple(reversed(range(rank))))
        if s.op == "Transpose"
        else Step(s.op, (), s.scale, s.zero, s.axis % rank, s.dtype)
        for s in source.steps
    ]
    return source


def _dequantize(node: onnx.NodeProto, attrs: dict[str, Any], stored: dict[str, onnx.TensorProto]) -> Step | None:
    """The DequantizeLinear step (per tensor or per axis), or None: blocked, or scale / zero point not stored."""
    if int(attrs.get("block_size", 0) or 0) > 0 or len(node.input) < 2 or node.input[1] not in stored:
        return None
    scale = numpy_helper.to_array(stored[node.input[1]])
    if len(node.input) > 2 and node.input[2]:
        if node.input[2] not in stored:
            return None
        zero = numpy_helper.to_array(stored[node.input[2]])
    else:
        zero = np.zeros(scale.shape, np.int64)
    if scale.ndim > 1 or zero.shape != scale.shape:
        return None
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(stored[node.input[1]].data_type))
    axis = int(attrs.get("axis", 1))
    return Step("DequantizeLinear", (), scale.astype(np.float64), zero.astype(np.int64), axis, dtype)


def integer_source(node: onnx.NodeProto, stored: dict[str, onnx.TensorProto]) -> WeightSource | None:
    """The stored int8/uint8 weight of a MatMulInteger / ConvInteger (operand 1, its zero point operand 3) or a
    QLinearMatMul / QLinearConv (operands 3 and 5), as a source whose one step subtracts the zero point (a
    DequantizeLinear with scale 1): ranked by ``B - zero_point``, pruned values become the zero point. None when the
    weight or its zero point is not stored."""
    at = 3 if node.op_type.startswith("QLinear") else 1
    if len(node.input) <= at or node.input[at] not in stored:
        return None
    tensor = stored[node.input[at]]
    if np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)) not in _INTS:
        return None
    zp_name = node.input[at + 2] if len(node.input) > at + 2 else ""
    if zp_name and zp_name not in stored:
        return None
    zero = numpy_helper.to_array(stored[zp_name]).astype(np.int64) if zp_name else np.zeros((), np.int64)
    if zero.ndim > 1:
        return None
    axis = 0 if node.op_type.endswith("Conv") or node.op_type == "ConvInteger" else 1  # per output: Cout of [Cout,
    # Cin, kh, kw]; N of B[K, N]
    return WeightSource(node.input[at], tensor, [Step("DequantizeLinear", (), np.ones(zero.shape), zero, axis)])
