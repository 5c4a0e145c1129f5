"""Rewrite: each layer selected for a sparse format becomes a sparsec node (docs/internals.md) with packed weights.

The node takes the layer's place and keeps its output value, so consumers are untouched; a Conv keeps its NCHW
input and output and carries its geometry in the node config (``op=conv``); Gemm's transA gets a Transpose in
front, its alpha is already folded into W and beta * C becomes the node's bias; a MatMul/ConvInteger gets its activation
converted to float32 (less its zero point) in front, and its consumers that cast its output to float32 read the
kernel's output (passes/integer.py); a QLinearMatMul/Conv the same in front and its requantization after
(passes/qlinear.py). Kernel symbols are ``sparsec_k<i>`` in graph order, so equal models give equal
artifacts. This is the only stage that replaces nodes (``fuse`` then grows the sparsec nodes it made).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx_ir as ir

from sparsec import node as sparse_node
from sparsec.formats import get_format
from sparsec.integer_reference import integer_output_name
from sparsec.layer import INTEGER_OPS, QLINEAR_OPS, Epilogue, Kernel, Layer

from .choose import floats_dense, signed_activation
from .cost_model import cost_model
from .float_qlinear import float_activation_products, float_dense_qlinear
from .graph import initializer, remove_unused_initializers, stable_topo_sort
from .integer import bypass_float_casts, float_conv, float_input, integer_output, uint8_input, zero_point
from .state import Compilation


def _initializer(graph: ir.Graph, name: str, value: np.ndarray) -> ir.Value:
    if name in graph.initializers:
        raise ValueError(f"initializer name {name!r} already exists")
    return initializer(graph, name, value)


def notes(layer: Layer, fmt: str) -> str:
    """The node's human-readable description."""
    g = layer.geom
    what = f"W {layer.n}x{layer.k}"
    if g is not None:
        what += f" ({g.kh}x{g.kw} stride {g.sh}x{g.sw} on {g.C}x{g.H}x{g.W})"
    return f"sparsec {fmt} {layer.op} {layer.name}: {what}"


def _output(layer: Layer) -> ir.Value:
    """The sparse node's output: unnamed (it takes the layer's output); for MatMul/ConvInteger a new float32 value."""
    if layer.op not in INTEGER_OPS:
        return ir.Value()
    old = layer.node.outputs[0]
    return ir.Value(name=integer_output_name(layer.name), shape=old.shape, type=ir.TensorType(ir.DataType.FLOAT))


def sparse_nodes(
    graph: ir.Graph, layer: Layer, kernel: Kernel, made: dict[tuple[int, int], ir.Value] | None = None
) -> list[ir.Node]:
    """The nodes replacing ``layer`` (a Transpose first for Gemm transA=1; for MatMul/ConvInteger the float
    conversion of its activation, shared through ``made``, and a Cast back to int32 last); registers the packed
    initializers."""
    x = layer.node.inputs[0]
    nodes: list[ir.Node] = []
    int8 = get_format(kernel.format).family == "int8"
    signed = int8 and signed_activation(layer)
    if layer.op in INTEGER_OPS and not int8:
        nodes, x = float_input(graph, layer, {} if made is None else made)
    elif signed:  # the int8 kernel multiplies uint8 by int8: an int8 activation is shifted by 128 first
        nodes, x = uint8_input(graph, layer, {} if made is None else made)
    elif int8 and layer.qdq is not None:  # a QDQ MatMul's uint8 activation, before its DequantizeLinear
        x = layer.qdq.q
    if layer.trans_a:
        xt = f"{layer.name}__xT"
        nodes.append(
            ir.Node("", "Transpose", [x], [ir.AttrInt64s("perm", [1, 0])], outputs=[ir.Value(name=xt)], name=xt)
        )
        x = nodes[-1].outputs[0]
    assert kernel.packed is not None
    arrays = list(kernel.packed.items())
    if layer.bias is not None:
        arrays.append(("bias", layer.bias.astype(np.float32)))
    inputs = [x, *(_initializer(graph, f"{layer.name}__{name}", value) for name, value in arrays)]
    if int8:  # X's zero point after the packed arrays (docs/internals.md, int8:1x4)
        inputs.append(zero_point(graph, layer, signed))
    if kernel.epilogue.scale:  # a QDQ MatMul's x_scale * w_scale (passes/qdq_layers.py)
        assert layer.qdq is not None
        inputs.append(_initializer(graph, f"{layer.name}__scale", layer.qdq.scale))
    attrs = sparse_node.attributes(kernel, layer.name, notes(layer, kernel.format))
    node = ir.Node(
        sparse_node.DOMAIN,
        sparse_node.OP_TYPE,
        inputs,
        [
            ir.Attr(k, ir.AttributeType.INT if isinstance(v, int) else ir.AttributeType.STRING, v)
            for k, v in attrs.items()
        ],
        outputs=[_output(layer)],
        name=layer.name,
    )
    if layer.op in INTEGER_OPS:
        return [*nodes, node, *integer_output(graph, layer, node.outputs[0])]
    return [*nodes, node]


class RewritePass(ir.passes.InPlacePass):
    """Replace every layer whose chosen format is not dense by a sparsec node; the layer records get their kernel.
    Where ORT's int8-activation kernels are slower than its float32 ones (x86), dense QLinearMatMul / QLinearConv with
    an int8 activation run exactly on the float32 ones (passes/float_qlinear.py)."""

    def __init__(self, state: Compilation) -> None:
        super().__init__()
        self.state = state

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        chosen = [la for la in self.state.records() if la.format != "dense"]
        floated = [
            la for la in self.state.records() if la.op == "ConvInteger" and la.format == "dense" and la.float_exact
        ]
        cost = cost_model(self.state.target.name, self.state.target.isa, self.state.target.int8_dot)
        float_qlinear = [la for la in self.state.records() if la.format == "dense" and floats_dense(la, cost)]
        products = float_activation_products(graph) if cost.s8s8_faster < 1 else 0
        if products:
            self.state.say(f"{products} int8 activation x activation QLinearMatMul run exactly on ORT's float32 MatMul")
        if not chosen and not floated and not float_qlinear and not products:
            return ir.passes.PassResult(model, modified=False)
        if sparse_node.DOMAIN not in model.opset_imports:
            model.opset_imports[sparse_node.DOMAIN] = 1
        order = {id(n): i for i, n in enumerate(graph)}
        made: dict[tuple[int, int], ir.Value] = {}  # integer activations converted to float32 once
        for i, layer in enumerate(sorted(chosen, key=lambda la: order[id(la.node)])):
            fmt = layer.format
            f = get_format(fmt)
            qdq = layer.qdq if f.family == "int8" else None  # a QDQ MatMul on an int8 kernel: its integers
            packed = f.pack(layer.w if qdq is None else qdq.w_int)
            kernel = Kernel(
                symbol=f"sparsec_k{i}",
                format=fmt,
                K=layer.k,
                N=layer.n,
                arrays=tuple(f.array_specs(packed)),
                epilogue=Epilogue(bias=layer.bias is not None, scale=0 if qdq is None else layer.n),
                conv=layer.geom,
                variant=layer.tuning.variant if layer.tuning is not None else "",
                packed=packed,
            )
            new = sparse_nodes(graph, layer, kernel, made)
            old = layer.node.outputs[0]
            ir.convenience.replace_nodes_and_values(graph, layer.node, [layer.node], new, [old], new[-1].outputs)
            sparse = next(n for n in reversed(new) if n.domain == sparse_node.DOMAIN)
            if sparse is not new[-1] and layer.op not in QLINEAR_OPS:  # float consumers of MatMul/ConvInteger's
                # int32 output read the kernel's output directly
                bypass_float_casts(graph, new[-1].outputs[0], sparse.outputs[0])
            self.state.update(replace(layer, kernel=kernel, node=sparse))
        for layer in floated:  # dense ConvInteger: ORT's float32 Conv, exactly (passes/integer.float_conv)
            new = float_conv(graph, layer, made)
            ir.convenience.replace_nodes_and_values(
                graph, layer.node, [layer.node], new, [layer.node.outputs[0]], new[-1].outputs
            )
            bypass_float_casts(graph, new[-1].outputs[0], new[-2].outputs[0])
            assert layer.choice is not None
            why = f"{layer.choice.reason}; runs exactly on ORT's float32 Conv (its ConvInteger is slower)"
            self.state.update(replace(layer, choice=replace(layer.choice, reason=why)))
        for layer in float_dense_qlinear(graph, float_qlinear):  # own Cast/Sub: not the DequantizeLinear above
            self.state.update(layer)
        remove_unused_initializers(graph)
        stable_topo_sort(graph)
        return ir.passes.PassResult(model, modified=True)
