"""QLinearMatMul / QLinearConv with a constant int8/uint8 weight (``onnxruntime.quantization``'s QOperator format, and
what converters from TFLite write): the integer layers of passes/integer.py (the same exact kernels on
``X - x_zero_point`` and ``W - w_zero_point``, QLinearConv's int32 bias in the epilogue), requantized as ORT does.

ORT's CPU kernels (onnxruntime/core/providers/cpu/quantization/quantize_linear_matmul.cc, and MLAS's requantize
output stage) compute the int32 sum, multiply it as float32 by ``x_scale * w_scale[n] / y_scale`` (float32, in that
order: one value, or one per output channel), round to nearest even, add y_zero_point and saturate. The compiled
layer computes the same float32 scale, multiplies the kernel's exact sum by it (an ONNX Mul, or an int8:1x4 kernel's
scale epilogue, which rounds the product apart from anything after it) and ends in ``QuantizeLinear(y, 1,
y_zero_point)``: ``y / 1`` is ``y``, then the same rounding, addition and saturation. Same bits as ORT's int8 path.

The Mul takes the scale as its first input: ORT's ConvMulFusion folds a ``Conv -> Mul(y, constant)`` into the Conv's
weights (``sum(x * (w * s))`` rounds differently from ``sum(x * w) * s``: measured on a MobileNet-v2 QOperator model
with int8 activations, one 1x1 layer a quantization step off ORT's QLinearConv), and matches the constant as the
Mul's second input only. Float Convs on exact sums (passes/float_qlinear.py, the verification's exact reference)
are followed by this Mul.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from sparsec.integer_reference import requant_scale as requant_scale_values
from sparsec.integer_reference import scaled_output_name
from sparsec.layer import QLINEAR_OPS

from .graph import constant, initializer

X_SCALE, W_SCALE, Y_SCALE, Y_ZERO_POINT, BIAS = 1, 4, 6, 7, 8  # input positions (same in both ops)


def _input(node: ir.Node, i: int) -> ir.Value | None:
    return node.inputs[i] if len(node.inputs) > i else None


def requant_scale(node: ir.Node, n: int) -> tuple[np.ndarray | None, str]:
    """``x_scale * w_scale / y_scale`` as float32 (one value, or ``n``: per output channel), or (None, why not)."""
    values = {}
    for what, i in (("x_scale", X_SCALE), ("w_scale", W_SCALE), ("y_scale", Y_SCALE)):
        v = constant(_input(node, i))
        if v is None or v.dtype != np.float32:
            return None, f"{node.op_type}'s {what} is not a constant float32"
        values[what] = v
    if values["x_scale"].size != 1 or values["y_scale"].size != 1:
        return None, f"{node.op_type}'s x_scale and y_scale must be single values (per tensor)"
    if values["w_scale"].size not in (1, n):
        return None, f"{node.op_type}'s w_scale has {values['w_scale'].size} values, not 1 or {n} (one per output)"
    s = requant_scale_values(values["x_scale"], values["w_scale"], values["y_scale"])
    if not np.all(np.isfinite(s)):
        return None, f"{node.op_type}'s requantization scale x_scale * w_scale / y_scale is not finite"
    return s, ""


def int_bias(node: ir.Node, n: int) -> tuple[np.ndarray | None, str]:
    """QLinearConv's int32 bias (input 8) as int64 [n]; None with "" when there is none, or (None, why not)."""
    value = _input(node, BIAS)
    if node.op_type != "QLinearConv" or value is None:
        return None, ""
    b = constant(value)
    if b is None or b.dtype != np.int32 or b.size != n:
        return None, f"QLinearConv's bias is not a constant int32 vector of {n} values"
    return b.reshape(n).astype(np.int64), ""


def requantize(graph: ir.Graph, node: ir.Node, name: str, y: ir.Value, n: int, conv: bool) -> list[ir.Node]:
    """``QuantizeLinear(Mul(y, scale), 1, y_zero_point)``: the QLinear ``node``'s quantized output from an exact
    float32 sum ``y`` with ``n`` output channels (NCHW when ``conv``); new names start with ``name``. The Mul is fused
    into int8:1x4 kernels (passes/epilogue_rules.FuseScale)."""
    assert node.op_type in QLINEAR_OPS
    scale, why = requant_scale(node, n)
    assert scale is not None, why
    shape = (n, 1, 1) if conv and scale.size > 1 else ((n,) if scale.size > 1 else ())
    s = initializer(graph, f"{name}__requant_scale", scale.reshape(shape).astype(np.float32))
    one = initializer(graph, f"{name}__one", np.array(1.0, np.float32))
    zp = _input(node, Y_ZERO_POINT)
    assert zp is not None
    scaled = ir.Value(name=scaled_output_name(name), shape=y.shape, type=ir.TensorType(ir.DataType.FLOAT))
    mul = ir.Node("", "Mul", [s, y], outputs=[scaled], name=f"{name}__scale")  # scale first: see the module docstring
    out = ir.Value(name=f"{name}__q", shape=node.outputs[0].shape, type=node.outputs[0].type)
    quant = ir.Node("", "QuantizeLinear", [scaled, one, zp], outputs=[out], name=f"{name}__requantize")
    return [mul, quant]
