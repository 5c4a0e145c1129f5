"""Integer layers: ``MatMulInteger`` / ``ConvInteger`` with a constant int8/uint8 weight (what
``onnxruntime.quantization``'s dynamic mode writes after DynamicQuantizeLinear) compiled on the float32 sparse
kernels, exactly. (A ConvInteger pads with the activation's zero point, which is 0 after the subtraction: the
float32 conv kernels' padding.)

The kernel multiplies ``X - a_zero_point`` (a DequantizeLinear with scale 1 in front of the node) by
``W = B - b_zero_point`` as float32. Every product and every partial sum is an integer; float32 holds every integer
up to 2**24 exactly, so the result equals MatMulInteger's int32 accumulation bit for bit whenever
``255 * max_n sum_k |W[n, k]|`` (the largest sum any output can reach: ``|x - a_zero_point| <= 255`` for uint8 and
int8) stays below 2**24, in any summation order. A layer whose weight could exceed that bound stays on ONNX Runtime,
with the bound in its reason. The consumers that cast the int32 output to float32 read the kernel's output instead.
QLinearMatMul / QLinearConv are integer layers too (weight at input 3, its zero point at 5; QLinearConv's int32 bias
counts towards the bound), requantized after the kernel (passes/qlinear.py).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx_ir as ir

from sparsec.integer_reference import integer_output_name
from sparsec.layer import QLINEAR_OPS, Layer

from .graph import constant, dims, initializer
from .qdq_layers import requantizable
from .qlinear import int_bias, requant_scale, requantize

EXACT = 2**24  # float32 represents every integer of smaller magnitude exactly
X_RANGE = 255  # largest |x - zero_point| of a uint8 or int8 activation


def exact_bound(w: np.ndarray) -> int:
    """The largest magnitude an output (or partial sum) can reach with this integer-valued W[N, K]."""
    if not w.size:
        return 0
    return int(X_RANGE * np.abs(w).astype(np.int64).sum(axis=1).max())


def _scalar_zero_point(v: ir.Value | None) -> str:
    """ "" when ``v`` is absent or a scalar (one zero point for the whole activation); else why not."""
    if v is None:
        return ""
    shape = dims(v)
    if shape is not None and all(d == 1 for d in shape):
        return ""
    return "a_zero_point is not a scalar (per-row zero points stay on ONNX Runtime)"


def weight_input(op: str) -> int:
    """Where an integer layer's weight is: input 1 (MatMul/ConvInteger) or 3 (QLinear ops); its zero point 2 later."""
    return 3 if op in QLINEAR_OPS else 1


def _is_conv(op: str) -> bool:
    return op in ("ConvInteger", "QLinearConv")


def _weight(node: ir.Node, b: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The weight less its zero point, as int32 (MatMulInteger: B[K, N], zero points per column; ConvInteger:
    [Cout, Cin, kh, kw], zero points per output channel), or (None, why the layer stays on ORT)."""
    conv = _is_conv(node.op_type)
    if not conv and b.ndim != 2:
        return None, f"{node.op_type} weight has rank {b.ndim}, only 2-D weights are compiled"
    if conv and b.ndim != 4:
        return None, f"only 2-D convolutions are compiled (weight has rank {b.ndim})"
    at = weight_input(node.op_type) + 2  # the weight's zero point
    zp_value = node.inputs[at] if len(node.inputs) > at else None
    zp = np.zeros((), b.dtype) if zp_value is None else constant(zp_value)
    if zp is None:
        return None, f"{'w' if conv else 'b'}_zero_point is not a constant"
    n = b.shape[0] if conv else b.shape[1]
    if zp.size not in (1, n):
        return None, f"the weight's zero point has {zp.size} values, not 1 or {n} (one per output)"
    shape = (-1, 1, 1, 1) if conv else (1, -1)
    return b.astype(np.int32) - zp.reshape(shape).astype(np.int32), ""


def integer_layer(node: ir.Node, name: str, b: np.ndarray, weight_name: str) -> Layer:
    """The Layer of a MatMul/ConvInteger or QLinearMatMul/Conv with constant weight ``b`` (skip says why it stays on
    ORT)."""
    from .analysis import conv_layer, matmul_layer, placeholder

    conv = _is_conv(node.op_type)
    w, skip = _weight(node, b)
    if w is None:
        n = b.shape[0] if conv and b.ndim else (b.shape[-1] if b.ndim else 1)
        shape = (int(n), int(b.size // max(n, 1)))
        return Layer(
            name, node.op_type, weight_name, placeholder(shape), node=node, skip=skip, weight_dtype=str(b.dtype)
        )
    a_zp = node.inputs[2] if len(node.inputs) > 2 else None
    if conv:
        layer = conv_layer(node, name, w.astype(np.float32), has_bias=False)
    else:
        layer = matmul_layer(node, name, w.astype(np.float32))
    layer = replace(layer, op=node.op_type, weight_name=weight_name, weight_dtype=str(b.dtype))
    bound = exact_bound(layer.w)
    inexact = _scalar_zero_point(a_zp)
    if node.op_type in QLINEAR_OPS:
        bias, why = int_bias(node, layer.n)
        inexact = inexact or why or requant_scale(node, layer.n)[1]
        if bias is not None:  # added to the sum in the kernel's epilogue, exactly as long as the sum stays exact
            bound += int(np.abs(bias).max(initial=0))
            layer = replace(layer, bias=bias.astype(np.float32))
    if not inexact and bound >= EXACT:
        inexact = (
            f"int8 sums can reach {bound} >= 2**24, beyond float32's exact integers (kept exact on ONNX Runtime; "
            "prune it further)"
        )
    return replace(layer, skip=inexact or layer.skip, float_exact=not inexact)


def float_input(graph: ir.Graph, layer: Layer, made: dict[tuple[int, int], ir.Value]) -> tuple[list[ir.Node], ir.Value]:
    """The node making the kernel's float32 ``X - a_zero_point`` from the layer's integer activation, and that value:
    a DequantizeLinear with scale 1 (exact: integers of magnitude <= 255), or a Cast without a zero point. Layers
    reading the same activation and zero point share one conversion (``made``)."""
    x = layer.node.inputs[0]
    zp = layer.node.inputs[2] if len(layer.node.inputs) > 2 else None
    assert x is not None
    key = (id(x), id(zp))
    if key in made:
        return [], made[key]
    base = f"{layer.name}__x"
    if zp is None:
        node = _cast(x, ir.DataType.FLOAT, base)
        node.outputs[0].shape = x.shape
    else:
        one = ir.Value(name=f"{base}_one", shape=ir.Shape([]), type=ir.TensorType(ir.DataType.FLOAT))
        one.const_value = ir.tensor(np.array(1.0, np.float32), name=one.name)
        graph.register_initializer(one)
        node = ir.Node("", "DequantizeLinear", [x, one, zp], outputs=[_float_like(x, base)], name=base)
    made[key] = node.outputs[0]
    return [node], made[key]


def zero_point(graph: ir.Graph, layer: Layer, signed: bool = False) -> ir.Value:
    """The int8 kernel's uint8 zero point: the layer's activation zero point (a QDQ MatMul's: its activation
    DequantizeLinear's), a uint8 0 initializer when the layer has none, or for an int8 activation (``signed``,
    shifted by ``uint8_input``) a constant one plus 128."""
    if layer.qdq is not None:
        zp = layer.qdq.zero_point
    else:
        zp = layer.node.inputs[2] if len(layer.node.inputs) > 2 else None
    if zp is not None and not signed:
        return zp
    z = constant(zp) if zp is not None else np.zeros((), np.int8)
    assert z is not None and z.size == 1, "an int8 kernel's zero point is one constant"  # passes/integer.integer_layer
    name = f"{layer.name}__x_zero_point"
    value = ir.Value(name=name, shape=ir.Shape([]), type=ir.TensorType(ir.DataType.UINT8))
    shifted = int(z.reshape(())) + (128 if signed else 0)
    value.const_value = ir.tensor(np.array(shifted, np.uint8), name=name)
    graph.register_initializer(value)
    return value


def uint8_input(graph: ir.Graph, layer: Layer, made: dict[tuple[int, int], ir.Value]) -> tuple[list[ir.Node], ir.Value]:
    """An int8 activation shifted to uint8 for the int8 kernels (``vpdpbusd`` multiplies uint8 by int8):
    ``QuantizeLinear(DequantizeLinear(x, 1, -128), 1, 0)`` = x + 128, exact (integers 0..255), with the zero point
    shifted the same (``zero_point(signed=True)``), so ``x - x_zero_point`` is unchanged. Shared through ``made``."""
    x = layer.qdq.q if layer.qdq is not None else layer.node.inputs[0]  # a QDQ MatMul: its DequantizeLinear's input
    assert x is not None
    key = (id(x), 0)
    if key in made:
        return [], made[key]
    base = f"{layer.name}__x_uint8"
    source = requantizable(x) if layer.qdq is not None else None
    if source is not None:  # a QDQ model's q: quantized again from its float input, to uint8 (one pass)
        xf, scale, zp = source
        shifted = initializer(graph, f"{base}_zero", np.array(zp + 128, np.uint8))
        out = ir.Value(name=base, shape=x.shape, type=ir.TensorType(ir.DataType.UINT8))
        made[key] = out
        return [ir.Node("", "QuantizeLinear", [xf, scale, shifted], outputs=[out], name=base)], out
    one = initializer(graph, f"{base}_one", np.array(1.0, np.float32))
    low = initializer(graph, f"{base}_low", np.array(-128, np.int8))
    zero = initializer(graph, f"{base}_zero", np.array(0, np.uint8))
    up = ir.Node("", "DequantizeLinear", [x, one, low], outputs=[_float_like(x, f"{base}_float")], name=f"{base}_float")
    out = ir.Value(name=base, shape=x.shape, type=ir.TensorType(ir.DataType.UINT8))
    down = ir.Node("", "QuantizeLinear", [up.outputs[0], one, zero], outputs=[out], name=base)
    made[key] = out
    return [up, down], out


def _float_like(x: ir.Value, name: str) -> ir.Value:
    """A float32 value shaped like ``x`` (the fusion rules read the kernel input's shape)."""
    return ir.Value(name=name, shape=x.shape, type=ir.TensorType(ir.DataType.FLOAT))


def _cast(x: ir.Value, to: ir.DataType, name: str) -> ir.Node:
    out = ir.Value(name=name, type=ir.TensorType(to))
    return ir.Node("", "Cast", [x], [ir.AttrInt64("to", int(to))], outputs=[out], name=name)


def float_conv(graph: ir.Graph, layer: Layer, made: dict[tuple[int, int], ir.Value]) -> list[ir.Node]:
    """A dense ConvInteger as ORT's float32 Conv on ``X - a_zero_point`` and the integer-valued weight, exact like the
    sparse kernels (``layer.float_exact``), then the Cast back to int32: ORT's ConvInteger (im2col and an int8 GEMM)
    runs 2.4-5.5x slower than its float32 Conv (passes/cost_model.py), grouped and depthwise convs included."""
    nodes, x = float_input(graph, layer, made)
    return [*nodes, *float_product(graph, layer, x, f"{layer.name}__conv")]


def float_product(graph: ir.Graph, layer: Layer, x: ir.Value, name: str) -> list[ir.Node]:
    """ORT's float32 Conv (MatMul) named ``name`` on the layer's activation less its zero point ``x`` and its weight
    less its zero point (a QLinearConv's int32 bias as a float32 one), exact for a ``float_exact`` layer, then the
    layer's own output (``integer_output``)."""
    node = layer.node
    b = constant(node.inputs[weight_input(node.op_type)])
    assert b is not None
    w, why = _weight(node, b)
    assert w is not None, why
    inputs = [x, initializer(graph, f"{layer.name}__w", w.astype(np.float32))]  # Conv [N, C, kh, kw], MatMul B[K, N]
    if layer.bias is not None:
        inputs.append(initializer(graph, f"{layer.name}__b", layer.bias.astype(np.float32)))
    out = ir.Value(
        name=integer_output_name(layer.name), shape=node.outputs[0].shape, type=ir.TensorType(ir.DataType.FLOAT)
    )
    conv = _is_conv(node.op_type)
    attrs = list(node.attributes.values()) if conv else []
    product = ir.Node("", "Conv" if conv else "MatMul", inputs, attrs, outputs=[out], name=name)
    return [product, *integer_output(graph, layer, out)]


def integer_output(graph: ir.Graph, layer: Layer, y: ir.Value) -> list[ir.Node]:
    """The nodes giving the layer's own output from the kernel's exact float32 sum ``y``: the Cast to int32 of
    MatMul/ConvInteger, or the QLinear ops' requantization (passes/qlinear.py)."""
    if layer.op in QLINEAR_OPS:
        return requantize(graph, layer.node, layer.name, y, layer.n, layer.geom is not None)
    return [_cast(y, ir.DataType.INT32, f"{layer.name}__int32")]


def bypass_float_casts(graph: ir.Graph, y_int: ir.Value, y: ir.Value) -> None:
    """Consumers of the int32 output that only cast it back to float32 read the kernel's output directly (exact:
    every value is an integer below 2**24); the int32 Cast goes when nothing else reads it."""
    for use in list(y_int.uses()):
        user = use.node
        if (
            user.op_type == "Cast"
            and user.domain in ("", "ai.onnx")
            and user.attributes.get("to") is not None
            and user.attributes["to"].value == int(ir.DataType.FLOAT)
            and not user.outputs[0].is_graph_output()
        ):
            ir.convenience.replace_all_uses_with(user.outputs[0], y)
            graph.remove(user, safe=True)
    producer = y_int.producer()
    if producer is not None and not y_int.uses() and not y_int.is_graph_output():
        graph.remove(producer, safe=True)
