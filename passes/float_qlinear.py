"""Dense QLinearMatMul / QLinearConv layers with a signed int8 activation run on ORT's float32 MatMul / Conv, exactly,
where ORT's own int8-activation kernels are the slow ones (x86: passes/choose.floats_dense).

ORT's x86 kernels for an int8 activation (s8s8, onnxruntime.quantization's static default) run at 0.2-0.38x of its
float32 ones on weight layers (passes/cost_model.ORT_S8S8_FASTER_X86). Such a layer left dense becomes
``X - x_zero_point`` (Cast to float32 and Sub: exact integers) times ``W - w_zero_point`` (a float32 initializer) on
ORT's float32 MatMul (a QLinearConv: its Conv, the int32 bias as a float32 one), whose products and partial sums are
integers below 2**24 (the layer is ``float_exact``: passes/integer.py's bound), then the requantization of
passes/qlinear.py: the same bits as ORT's int8 kernel. Cast and Sub of their own, not the scale-1 DequantizeLinear
the sparse layers share, so that nothing here is a DequantizeLinear -> MatMul pattern for ORT's QDQ fusions.

An activation x activation QLinearMatMul with int8 activations (attention's; never a layer) floats the same way
(``float_activation_products``: each activation Cast and Sub once, a float32 batched MatMul, the requantization)
where its sums are exact: scalar zero points and a static K with ``K * 255 * 255 < 2**24`` (K = 32 for MiniLM's
Q x K^T; scores x V has K = the sequence length, static only with ``--input-shape``, and 128 * 255 * 255 fits).
Measured on MiniLM-L3 QOperator s8 at batch 8 (AMD EPYC Zen 4, ORT profiler): the three Q x K^T took 7.4 ms on ORT's
QLinearMatMul, ~3 ms floated. (The same DequantizeLinear x DequantizeLinear -> QuantizeLinear in a QDQ model is not
floated: ORT's run of the QDQ model took 2.5 ms for them, floated 4.3 ms, and with static shapes floating scores x V
moved outputs off ORT's by 30%: ORT does not run that pattern as one QLinearMatMul.)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx_ir as ir

from sparsec.layer import QLINEAR_OPS, Choice, Layer

from .graph import constant, dims, initializer
from .integer import EXACT, X_RANGE, float_product
from .qlinear import requant_scale, requantize

Made = dict[tuple[int, int], ir.Value]


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
    sub = ir.Node("", "Sub", [cast.outputs[0], initializer(graph, f"{name}_zp", z.astype(np.float32))], name=name)
    sub.outputs[0].name, sub.outputs[0].shape = name, x.shape
    sub.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)
    made[key] = sub.outputs[0]
    return [cast, sub]


def float_dense_qlinear(graph: ir.Graph, layers: list[Layer]) -> list[Layer]:
    """Float ``layers`` (dense int8-activation QLinear layers, ``float_exact``) in ``graph``: returns their records
    with the reason saying so. Layers reading one activation share its Cast/Sub."""
    made: Made = {}
    updated = []
    for layer in layers:
        assert layer.op in QLINEAR_OPS and layer.float_exact
        node = layer.node
        x = node.inputs[0]
        assert x is not None
        new = _less_zero_point(graph, x, node.inputs[2], f"{layer.name}__x", made)
        new += float_product(graph, layer, made[(id(x), id(node.inputs[2]))], f"{layer.name}__float")
        ir.convenience.replace_nodes_and_values(graph, node, [node], new, [node.outputs[0]], [new[-1].outputs[0]])
        op = "Conv" if layer.geom else "MatMul"
        before = layer.choice.reason if layer.choice is not None else layer.skip or "stays dense"
        why = f"{before}; runs exactly on ORT's float32 {op} (its int8-activation kernel is slower)"
        choice = replace(layer.choice, reason=why) if layer.choice is not None else Choice("dense", why)
        updated.append(replace(layer, choice=choice))
    return updated


def _scalar_constant(v: ir.Value | None) -> bool:
    c = constant(v) if v is not None else None
    return c is not None and c.size == 1


def _int8_zero_point(v: ir.Value | None) -> bool:
    """``v`` is one constant int8 zero point (the activation's type, even where types were never inferred)."""
    c = constant(v) if v is not None else None
    return c is not None and c.size == 1 and c.dtype == np.int8


def _exact_product(node: ir.Node) -> bool:
    """An int8 activation x activation QLinearMatMul whose sums float32 holds exactly, requantized by one scale."""
    if len(node.inputs) < 8 or constant(node.inputs[3]) is not None:
        return False
    a, b = dims(node.inputs[0]) or [None], dims(node.inputs[3]) or [None, None]
    k = a[-1] if isinstance(a[-1], int) else (b[-2] if len(b) > 1 else None)
    return (
        isinstance(k, int)
        and k * X_RANGE * X_RANGE < EXACT
        and _int8_zero_point(node.inputs[2])
        and _int8_zero_point(node.inputs[5])
        and all(_scalar_constant(node.inputs[i]) for i in (1, 4, 6, 7))
        and requant_scale(node, 1)[0] is not None
    )


def float_activation_products(graph: ir.Graph) -> int:
    """Float every exact int8 activation x activation QLinearMatMul in ``graph`` (module docstring); how many."""
    made: Made = {}
    count = 0
    for node in list(graph):
        if node.op_type != "QLinearMatMul" or node.domain not in ("", "ai.onnx") or not _exact_product(node):
            continue
        name = f"{node.name or node.outputs[0].name}__float".replace("/", "_")
        a, b = node.inputs[0], node.inputs[3]
        assert a is not None and b is not None
        nodes = _less_zero_point(graph, a, node.inputs[2], f"{name}_a", made)
        nodes += _less_zero_point(graph, b, node.inputs[5], f"{name}_b", made)
        y = ir.Value(name=f"{name}_y", type=ir.TensorType(ir.DataType.FLOAT))
        pair = [made[(id(a), id(node.inputs[2]))], made[(id(b), id(node.inputs[5]))]]
        product = ir.Node("", "MatMul", pair, outputs=[y], name=f"{name}_matmul")
        new = [*nodes, product, *requantize(graph, node, name, y, 1, False)]
        ir.convenience.replace_nodes_and_values(graph, node, [node], new, [node.outputs[0]], [new[-1].outputs[0]])
        count += 1
    return count
