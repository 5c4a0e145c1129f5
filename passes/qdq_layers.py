"""QDQ MatMuls as integer products, for the int8 kernels: what ``onnxruntime.quantization`` writes for a linear
layer, ``MatMul(DequantizeLinear(q, x_scale, x_zero_point), DequantizeLinear(W, w_scale, 0))`` with an int8 W
(folded to its float32 value by passes/constants.py, which keeps the integers in the value's meta).

The float product ``sum_k x_scale (q_k - x_zero_point) * w_scale[n] W[n, k]`` is ``x_scale * w_scale[n]`` times the
integer sum ``sum_k (q_k - x_zero_point) W[n, k]``: an int8:1x4 kernel computes that sum exactly (int32, VNNI) and
multiplies it by the float32 ``x_scale * w_scale[n]`` in its epilogue (passes/rewrite.py). The two agree to float32
rounding (the float product is rounded at every partial sum, the integer one once), as a float kernel and ORT's
MatMul agree: a QDQ layer is a float layer, checked as one (sparsec/verify_layers.py), whichever kernel runs it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import onnx_ir as ir

from sparsec.layer import Layer, QdqOperands

from .constants import DEQUANTIZED
from .graph import is_onnx, quantization_constants


def qdq_operands(node: ir.Node) -> QdqOperands | None:
    """The integers behind a MatMul of a per-tensor DequantizeLinear activation and a symmetric int8 weight (one
    scale, or one per output column), or None."""
    x, w = node.inputs[0], node.inputs[1] if len(node.inputs) > 1 else None
    dq = x.producer() if x is not None else None
    stored = w.meta.get(DEQUANTIZED) if w is not None else None
    found = quantization_constants(dq) if dq is not None and is_onnx(dq, "DequantizeLinear") else None
    if dq is None or stored is None or found is None:
        return None
    q, zp_value = dq.inputs[0], dq.inputs[2] if len(dq.inputs) > 2 else None
    x_scale, x_zp = found[0], found[1] if found[1] is not None else np.zeros((), np.uint8)
    if q is None or q.dtype not in (ir.DataType.INT8, ir.DataType.UINT8):
        return None
    if x_scale.size != 1 or x_zp.size != 1 or x_scale.dtype != np.float32:
        return None
    ints, w_scale, w_zp, axis = stored
    if ints.dtype != np.int8 or ints.ndim != 2 or np.any(w_zp != 0) or w_scale.dtype != np.float32:
        return None
    n = ints.shape[1]
    if w_scale.size not in (1, n) or (w_scale.size == n > 1 and axis not in (1, -1)):
        return None
    scale = (np.float32(x_scale.reshape(())) * np.broadcast_to(w_scale.reshape(-1), (n,))).astype(np.float32)
    return QdqOperands(
        q=q,
        zero_point=zp_value,
        signed=q.dtype == ir.DataType.INT8,
        w_int=np.ascontiguousarray(ints.T, np.float32),
        scale=scale,
        shift_passes=1 if requantizable(q) is not None else 2,
    )


def requantizable(q: ir.Value) -> tuple[ir.Value, ir.Value, int] | None:
    """(float input, scale, zero point) of the QuantizeLinear making an int8 ``q`` with one constant scale and zero
    point: the uint8 ``q + 128`` is then ``QuantizeLinear(input, scale, zero_point + 128)`` (saturating at 0 and 255
    exactly where the int8 one saturates at -128 and 127), one pass instead of two (passes/integer.uint8_input)."""
    node = q.producer()
    if node is None or not is_onnx(node, "QuantizeLinear") or len(node.inputs) < 3:
        return None
    x, scale_value, found = node.inputs[0], node.inputs[1], quantization_constants(node)
    if x is None or scale_value is None or found is None:
        return None
    scale, zp = found
    if zp is None or scale.size != 1 or zp.size != 1 or zp.dtype != np.int8 or x.dtype != ir.DataType.FLOAT:
        return None
    return x, scale_value, int(zp.reshape(()))


def share(layers: list[Layer]) -> list[Layer]:
    """The layers with each QDQ MatMul's ``sharing``: how many read its q."""
    counts = Counter(id(la.qdq.q) for la in layers if la.qdq is not None)
    return [
        replace(la, qdq=replace(la.qdq, sharing=counts[id(la.qdq.q)])) if la.qdq is not None else la for la in layers
    ]
