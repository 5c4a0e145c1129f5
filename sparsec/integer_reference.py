"""The verification reference for MatMulInteger / ConvInteger layers compiled sparse: each computed exactly, as
ONNX defines it.

ONNX's MatMulInteger accumulates in int32. ORT's CPU kernel for a uint8 activation and an int8 weight (u8s8, what
``onnxruntime.quantization``'s dynamic mode writes) uses ``vpmaddubsw`` on x86 CPUs without VNNI, whose int16 pair
sums saturate: measured on an AVX2 AMD EPYC, 384x1536 full-range int8 weights, 53% of the outputs differ from the
exact sums (by up to 24778); with uint8 weights (u8u8) ORT is exact. The compiled layer is exact (passes/integer.py),
so the reference computes those layers exactly too: ``Cast(A, double) - a_zero_point`` times ``B - b_zero_point`` in
float64 on ORT (exact below 2**53; a ConvInteger as a float32 Conv, exact below 2**24 as compile guarantees),
giving the layer's float32 value (named as the compiled kernel's output, so the
per-layer check finds it) and the int32 output the rest of the graph reads. Every other node runs on ORT unchanged.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .weight_source import stored_tensors


def integer_output_name(layer: str) -> str:
    """The name of a MatMulInteger layer's float32 value: the kernel's output, and the exact reference's."""
    return f"{layer}__y"


def _exact(
    node: onnx.NodeProto, b: np.ndarray, zp: np.ndarray | None, y_name: str
) -> tuple[list[onnx.NodeProto], onnx.TensorProto]:
    """MatMulInteger as a float64 MatMul; ConvInteger as a float32 Conv (ORT has no float64 Conv; exact all the same,
    since compile keeps only layers whose sums stay below 2**24) on ``A - a_zero_point``."""
    base = f"{y_name}__exact"
    conv = node.op_type == "ConvInteger"
    dtype, to = (np.float32, TensorProto.FLOAT) if conv else (np.float64, TensorProto.DOUBLE)
    w = np.asarray(b, np.float64)
    if zp is not None:
        w = w - np.asarray(zp, np.float64).reshape((-1, 1, 1, 1) if conv else (1, -1))
    weight = numpy_helper.from_array(w.astype(dtype), f"{base}_w")
    nodes = [helper.make_node("Cast", [node.input[0]], [f"{base}_a"], to=to)]
    a = f"{base}_a"
    if len(node.input) > 2 and node.input[2]:
        nodes.append(helper.make_node("Cast", [node.input[2]], [f"{base}_azp"], to=to))
        nodes.append(helper.make_node("Sub", [a, f"{base}_azp"], [f"{base}_ax"]))
        a = f"{base}_ax"
    if conv:  # same attributes: kernel_shape, strides, pads, dilations, group, auto_pad
        product = helper.make_node("Conv", [a, weight.name], [y_name])
        product.attribute.extend(node.attribute)
        nodes.append(product)
    else:
        nodes.append(helper.make_node("MatMul", [a, weight.name], [f"{base}_y"]))
        nodes.append(helper.make_node("Cast", [f"{base}_y"], [y_name], to=TensorProto.FLOAT))
    nodes.append(helper.make_node("Cast", [y_name], [node.output[0]], to=TensorProto.INT32))
    return nodes, weight


def exact_reference(original: onnx.ModelProto, layers: dict[str, str]) -> onnx.ModelProto:
    """A copy of ``original`` whose MatMulInteger / ConvInteger nodes reading a weight in ``layers`` (weight name ->
    layer name) are computed exactly; ``original`` itself when there is none."""
    if not layers:
        return original
    out = onnx.ModelProto()
    out.CopyFrom(original)
    nodes: list[onnx.NodeProto] = []
    used: set[str] = set()
    stored = stored_tensors(out.graph)
    for node in out.graph.node:
        weight = node.input[1] if node.op_type in ("MatMulInteger", "ConvInteger") and len(node.input) > 1 else ""
        if weight not in layers or weight not in stored:
            nodes.append(node)
            continue
        b = numpy_helper.to_array(stored[weight])
        zp_name = node.input[3] if len(node.input) > 3 else ""
        zp = numpy_helper.to_array(stored[zp_name]) if zp_name in stored else None
        y_name = integer_output_name(layers[weight])
        while y_name in used:  # a weight shared by two nodes: the second gets no per-layer tap
            y_name += "_"
        used.add(y_name)
        made, w = _exact(node, b, zp, y_name)
        nodes.extend(made)
        out.graph.initializer.append(w)
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
