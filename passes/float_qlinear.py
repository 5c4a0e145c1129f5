"""Dense QLinearMatMul / QLinearConv layers with a signed int8 activation run on ORT's float32 MatMul / Conv, exactly,
where ORT's own int8-activation kernels are the slow ones (x86: passes/choose.floats_dense).

ORT's x86 kernels for an int8 activation (s8s8, onnxruntime.quantization's static default) run at 0.2-0.38x of its
float32 ones on weight layers (passes/cost_model.ORT_S8S8_FASTER_X86). Such a layer left dense becomes
``X - x_zero_point`` (Cast to float32 and Sub: exact integers) times ``W - w_zero_point`` (a float32 initializer) on
ORT's float32 MatMul (a QLinearConv: its Conv, the int32 bias as a float32 one), whose products and partial sums are
integers below 2**24 (the layer is ``float_exact``: passes/integer.py's bound), then the requantization of
passes/qlinear.py: the same bits as ORT's int8 kernel. Cast and Sub of their own, not the scale-1 DequantizeLinear
the sparse layers share, so that nothing here is a DequantizeLinear -> MatMul pattern for ORT's QDQ fusions.

Activation x activation QLinearMatMul (attention's, never a layer) keep ORT's kernel: floated the same way (two
Cast/Sub, a float32 batched MatMul, the requantization) they measured slower, 4.3 against 2.5 ms for MiniLM-L3's
three Q x K^T at batch 8 (AMD EPYC Zen 4, 2 threads): the s8s8 penalty is a weight-layer one.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx_ir as ir

from sparsec.integer_reference import integer_output_name
from sparsec.layer import QLINEAR_OPS, Choice, Layer

from .graph import constant
from .integer import _weight
from .qlinear import requantize

Made = dict[tuple[int, int], ir.Value]


def _float_constant(graph: ir.Graph, name: str, value: np.ndarray) -> ir.Value:
    v = ir.Value(name=name, shape=ir.Shape(value.shape), type=ir.TensorType(ir.DataType.FLOAT))
    v.const_value = ir.tensor(np.ascontiguousarray(value, np.float32), name=name)
    graph.register_initializer(v)
    return v


def _less_zero_point(graph: ir.Graph, x: ir.Value, zp: ir.Value | None, name: str, made: Made) -> list[ir.Node]:
    """Nodes making float32 ``x - zp`` (Cast, Sub) into ``made[(id(x), id(zp))]``, once per pair."""
    key = (id(x), id(zp))
    if key in made:
        return []
    cast = ir.Node("", "Cast", [x], [ir.AttrInt64("to", int(ir.DataType.FLOAT))], name=f"{name}_float")
    cast.outputs[0].name, cast.outputs[0].shape = f"{name}_float", x.shape
    cast.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)
    made[key] = cast.outputs[0]
    z = constant(zp) if zp is not None else None
    if z is None or not np.any(z):
        return [cast]
    sub = ir.Node("", "Sub", [cast.outputs[0], _float_constant(graph, f"{name}_zp", z.astype(np.float32))], name=name)
    sub.outputs[0].name, sub.outputs[0].shape = name, x.shape
    sub.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)
    made[key] = sub.outputs[0]
    return [cast, sub]


def float_dense_qlinear(graph: ir.Graph, layers: list[Layer], made: Made) -> list[Layer]:
    """Float ``layers`` (dense int8-activation QLinear layers, ``float_exact``) in ``graph``: returns their records
    with the reason saying so."""
    updated = []
    for layer in layers:
        assert layer.op in QLINEAR_OPS and layer.float_exact
        new = _float_layer(graph, layer, made)
        node = layer.node
        ir.convenience.replace_nodes_and_values(graph, node, [node], new, [node.outputs[0]], [new[-1].outputs[0]])
        op = "Conv" if layer.geom else "MatMul"
        before = layer.choice.reason if layer.choice is not None else layer.skip or "stays dense"
        why = f"{before}; runs exactly on ORT's float32 {op} (its int8-activation kernel is slower)"
        choice = replace(layer.choice, reason=why) if layer.choice is not None else Choice("dense", why)
        updated.append(replace(layer, choice=choice))
    return updated


def _float_layer(graph: ir.Graph, layer: Layer, made: Made) -> list[ir.Node]:
    node = layer.node
    b = constant(node.inputs[3])
    assert b is not None
    w, why = _weight(node, b)
    assert w is not None, why
    x = node.inputs[0]
    assert x is not None
    nodes = _less_zero_point(graph, x, node.inputs[2], f"{layer.name}__x", made)
    conv = node.op_type == "QLinearConv"
    weight = _float_constant(graph, f"{layer.name}__w", w)  # stored layout: MatMul's B[K, N], Conv's [N, C, kh, kw]
    inputs = [made[(id(x), id(node.inputs[2]))], weight]
    if layer.bias is not None:
        inputs.append(_float_constant(graph, f"{layer.name}__b", layer.bias))
    y = ir.Value(name=integer_output_name(layer.name), type=ir.TensorType(ir.DataType.FLOAT))
    attrs = list(node.attributes.values()) if conv else []
    product = ir.Node("", "Conv" if conv else "MatMul", inputs, attrs, outputs=[y], name=f"{layer.name}__float")
    return [*nodes, product, *requantize(graph, node, layer.name, y, layer.n, conv)]
