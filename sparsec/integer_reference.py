"""The verification reference for the integer layers compiled sparse (MatMulInteger / ConvInteger, QLinearMatMul /
QLinearConv): each computed exactly, as ONNX defines it.

ONNX's MatMulInteger accumulates in int32. ORT's CPU kernel for a uint8 activation and an int8 weight (u8s8, what
``onnxruntime.quantization``'s dynamic mode writes) uses ``vpmaddubsw`` on x86 CPUs without VNNI, whose int16 pair
sums saturate: measured on an AVX2 AMD EPYC, 384x1536 full-range int8 weights, 53% of the outputs differ from the
exact sums (by up to 24778); with uint8 weights (u8u8) ORT is exact. The compiled layer is exact (passes/integer.py),
so the reference computes those layers exactly too: ``Cast(A, double) - a_zero_point`` times ``B - b_zero_point`` in
float64 on ORT (exact below 2**53; a ConvInteger as a float32 Conv, exact below 2**24 as compile guarantees),
giving the layer's float32 value (named as the compiled kernel's output, so the
per-layer check finds it) and the int32 output the rest of the graph reads; a QLinear layer's requantization follows
as ORT computes it (sparsec/passes/qlinear.py; ORT's QLinear kernels use the same u8s8 GEMM). Every other node runs
on ORT unchanged.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .weight_source import stored_tensors


def integer_output_name(layer: str) -> str:
    """The name of an integer layer's exact float32 sum: the kernel's output, and the exact reference's."""
    return f"{layer}__y"


def scaled_output_name(layer: str) -> str:
    """The name of a QLinear layer's sum times its requantization scale (before QuantizeLinear), in both models."""
    return f"{layer}__scaled"


def requant_scale(x_scale: np.ndarray, w_scale: np.ndarray, y_scale: np.ndarray) -> np.ndarray:
    """``x_scale * w_scale / y_scale`` in float32 at each step, the order ORT's QLinearMatMul / QLinearConv use
    (one value, or one per output channel)."""
    x, y = np.float32(x_scale.reshape(-1)[0]), np.float32(y_scale.reshape(-1)[0])
    with np.errstate(all="ignore"):
        return ((x * w_scale.reshape(-1).astype(np.float32)) / y).astype(np.float32)


def _exact(
    node: onnx.NodeProto, stored: dict[str, onnx.TensorProto], layer: str
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """MatMulInteger / QLinearMatMul as a float64 MatMul; ConvInteger / QLinearConv as a float32 Conv (ORT has no
    float64 Conv; exact all the same, since compile keeps only layers whose sums stay below 2**24) on ``A -
    a_zero_point``; then MatMul/ConvInteger's Cast to int32, or the QLinear ops' requantization (float32 Mul by the
    scale, QuantizeLinear with scale 1, as the compiled layer and ORT's kernels compute it)."""

    def value(i: int) -> np.ndarray | None:
        name = node.input[i] if len(node.input) > i else ""
        return numpy_helper.to_array(stored[name]) if name in stored else None

    y_name = integer_output_name(layer)
    base = f"{y_name}__exact"
    qlinear = node.op_type.startswith("QLinear")
    at = 3 if qlinear else 1
    conv = node.op_type.endswith("Conv") or node.op_type == "ConvInteger"
    dtype, to = (np.float32, TensorProto.FLOAT) if conv else (np.float64, TensorProto.DOUBLE)
    b, zp = value(at), value(at + 2)
    assert b is not None
    w = np.asarray(b, np.float64)
    if zp is not None:
        w = w - np.asarray(zp, np.float64).reshape((-1, 1, 1, 1) if conv else (1, -1))
    inits = [numpy_helper.from_array(w.astype(dtype), f"{base}_w")]
    nodes = [helper.make_node("Cast", [node.input[0]], [f"{base}_a"], to=to)]
    a = f"{base}_a"
    if len(node.input) > 2 and node.input[2]:
        nodes.append(helper.make_node("Cast", [node.input[2]], [f"{base}_azp"], to=to))
        nodes.append(helper.make_node("Sub", [a, f"{base}_azp"], [f"{base}_ax"]))
        a = f"{base}_ax"
    bias = value(8) if node.op_type == "QLinearConv" else None
    if bias is not None:
        inits.append(numpy_helper.from_array(bias.astype(np.float32), f"{base}_bias"))
    if conv:  # same attributes: kernel_shape, strides, pads, dilations, group, auto_pad
        product = helper.make_node("Conv", [a, inits[0].name, *[t.name for t in inits[1:]]], [y_name])
        product.attribute.extend(node.attribute)
        nodes.append(product)
    else:
        nodes.append(helper.make_node("MatMul", [a, inits[0].name], [f"{base}_y"]))
        nodes.append(helper.make_node("Cast", [f"{base}_y"], [y_name], to=TensorProto.FLOAT))
    if not qlinear:
        nodes.append(helper.make_node("Cast", [y_name], [node.output[0]], to=TensorProto.INT32))
        return nodes, inits
    scales = [value(i) for i in (1, 4, 6)]
    assert all(v is not None for v in scales)
    s = requant_scale(*scales)  # type: ignore[arg-type]
    s = s.reshape((-1, 1, 1) if conv and s.size > 1 else ((-1,) if s.size > 1 else ()))
    inits += [
        numpy_helper.from_array(s, f"{base}_scale"),
        numpy_helper.from_array(np.array(1.0, np.float32), f"{base}_one"),
    ]
    # the scale first: ORT's ConvMulFusion would fold a Mul(y, constant) into the Conv's weights (passes/qlinear.py)
    nodes.append(helper.make_node("Mul", [f"{base}_scale", y_name], [scaled_output_name(layer)]))
    nodes.append(
        helper.make_node("QuantizeLinear", [scaled_output_name(layer), f"{base}_one", node.input[7]], [node.output[0]])
    )
    return nodes, inits


def exact_reference(original: onnx.ModelProto, layers: dict[str, str]) -> onnx.ModelProto:
    """A copy of ``original`` whose integer nodes (MatMul/ConvInteger, QLinearMatMul/Conv) reading a weight in
    ``layers`` (weight name -> layer name) are computed exactly; ``original`` itself when there is none."""
    if not layers:
        return original
    out = onnx.ModelProto()
    out.CopyFrom(original)
    nodes: list[onnx.NodeProto] = []
    used: set[str] = set()
    stored = stored_tensors(out.graph)
    for node in out.graph.node:
        at = 3 if node.op_type in ("QLinearMatMul", "QLinearConv") else 1
        integer = node.op_type in ("MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv")
        weight = node.input[at] if integer and node.domain in ("", "ai.onnx") and len(node.input) > at else ""
        if weight not in layers or weight not in stored:
            nodes.append(node)
            continue
        tag = layers[weight]
        while tag in used:  # a weight shared by two nodes: the second gets no per-layer tap
            tag += "_"
        used.add(tag)
        made, inits = _exact(node, stored, tag)
        nodes.extend(made)
        out.graph.initializer.extend(inits)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def fold_dequantized(original: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``original`` where each weight in ``names`` (a layer's weight computed from constants, e.g. an int8
    tensor behind DequantizeLinear in a QDQ model) is an initializer holding its float32 value, folded by compile's
    own constants pass: ORT then runs those layers as the float32 product the sparse kernels compute, instead of
    fusing the DequantizeLinear into an int8 kernel (which, like MatMulInteger, saturates on x86 CPUs without VNNI:
    31% off on MiniLM-L3 QDQ). The rest of the graph, quantized activations included, runs on ORT as written.
    ``original`` when ``names`` is empty; a weight that cannot be computed alone stays as it is."""
    import onnx_ir as ir

    from .passes.constants import fold_weight_subgraphs
    from .passes.graph import hide_map_types, restore_types, to_proto

    if not names:
        return original
    proto, hidden = hide_map_types(original)
    model = ir.from_proto(proto)
    fold_weight_subgraphs(model.graph, dict(model.opset_imports), only=set(names))
    return restore_types(to_proto(model, proto), hidden)
