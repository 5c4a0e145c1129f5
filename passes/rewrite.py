"""Rewrite: each layer selected for a sparse format becomes a sparsec node (docs/internals.md) with packed weights.

The node keeps the layer's output name, so consumers are untouched; a Conv keeps its NCHW input and output and
carries its geometry in the node config (``op=conv``); Gemm's transA gets a Transpose in front, its
alpha is already folded into W and beta * C becomes the node's bias. Kernel symbols are ``sparsec_k<i>`` in graph
order, so equal models give equal artifacts.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sparsec.formats import get_format
from sparsec.node import DOMAIN, OP_TYPE, SparseNodeInfo, node_attributes

from .analysis import Layer
from .graph import remove_unused_initializers, topo_sort


def _ensure_domain(model: onnx.ModelProto) -> None:
    if not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, 1))


def sparse_node(layer: Layer, fmt: str, kernel: str, model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The nodes replacing ``layer`` (a Transpose first for Gemm transA=1), adding packed initializers to ``model``."""
    packed = get_format(fmt).pack(layer.w)
    existing = {t.name for t in model.graph.initializer}
    inputs = [layer.node.input[0]]
    nodes: list[onnx.NodeProto] = []
    if layer.trans_a:
        xt = f"{layer.name}__xT"
        nodes.append(helper.make_node("Transpose", [layer.node.input[0]], [xt], name=xt, perm=[1, 0]))
        inputs = [xt]
    arrays = list(packed.items())
    if layer.bias is not None:
        arrays.append(("bias", layer.bias.astype(np.float32)))
    for array_name, value in arrays:
        init = f"{layer.name}__{array_name}"
        if init in existing:
            raise ValueError(f"initializer name {init!r} already exists")
        model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value), init))
        inputs.append(init)
    if layer.geom is not None:
        info = SparseNodeInfo.for_conv(kernel, fmt, layer.n, layer.geom, bias=layer.bias is not None)
        g = layer.geom
        what = f"W {layer.n}x{layer.k} ({g.kh}x{g.kw} stride {g.sh}x{g.sw} on {g.C}x{g.H}x{g.W})"
    else:
        info = SparseNodeInfo(kernel=kernel, format=fmt, K=layer.k, N=layer.n, bias=layer.bias is not None)
        what = f"W {layer.n}x{layer.k}"
    attrs = node_attributes(info, layer.name, f"sparsec {fmt} {layer.op} {layer.name}: {what}")
    nodes.append(
        helper.make_node(OP_TYPE, inputs, [layer.node.output[0]], name=layer.name, domain=DOMAIN, **attrs)  # type: ignore[arg-type]
    )
    return nodes


def rewrite(model: onnx.ModelProto, layers: list[Layer], formats: dict[str, str]) -> dict[str, str]:
    """Replace every layer whose format (``formats[layer.name]``) is not dense; returns layer name -> kernel.

    ``layers`` must come from ``find_layers`` on this same, unmodified model (their ``index`` is a node position).
    """
    chosen = [la for la in layers if formats.get(la.name, "dense") != "dense"]
    if not chosen:
        return {}
    _ensure_domain(model)
    replace = {la.index: la for la in chosen}
    kernels: dict[str, str] = {}
    new_nodes: list[onnx.NodeProto] = []
    for i, node in enumerate(model.graph.node):
        layer = replace.get(i)
        if layer is None:
            new_nodes.append(node)
            continue
        kernels[layer.name] = f"sparsec_k{len(kernels)}"
        new_nodes.extend(sparse_node(layer, formats[layer.name], kernels[layer.name], model))
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    remove_unused_initializers(model.graph)
    topo_sort(model.graph)
    return kernels
