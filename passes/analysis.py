"""Analysis (read-only): find the layers with constant weights and profile each weight's sparsity.

A *layer* is a MatMul, Gemm or Conv whose weight operand is a constant float32 tensor. Every weight is brought to
the W[N, K] orientation of docs/internals.md; Gemm's alpha is folded into W and beta * C becomes a bias vector; a
Conv's [Cout, Cin, kh, kw] weight becomes W[Cout, Cin*kh*kw] with its geometry (sparsec/conv.py): static, or
dynamic when the height and width are symbolic (the kernel reads them at run time).
A MatMulInteger, ConvInteger, QLinearMatMul or QLinearConv with a constant int8/uint8 weight is a layer too, computed
exactly (passes/integer.py, passes/qlinear.py). Non-float32 weights of float layers are listed (so reports are
complete) with the reason they stay on ORT.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import onnx_ir as ir

from sparsec.conv import ConvGeometry, runtime_geometry, same_pads
from sparsec.formats.sparsity import profile_weight
from sparsec.layer import INTEGER_OPS, Layer

from .absorbed import absorbed_nodes
from .constants import SOURCE_DTYPE
from .graph import attr, constant, dims, rank
from .integer import integer_layer, weight_input
from .layout import image_sizes, reorder_elements
from .qdq_layers import qdq_operands, share


def _safe(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.]", "_", name).strip("_.") or "layer"
    out, i = base, 1
    while out in taken:
        i += 1
        out = f"{base}_{i}"
    taken.add(out)
    return out


def _rows(x: ir.Value | None) -> int | None:
    shape = dims(x)
    if not shape or any(not isinstance(d, int) for d in shape[:-1]):
        return None
    return math.prod(shape[:-1]) if len(shape) > 1 else 1  # type: ignore[arg-type]


def placeholder(shape: tuple[int, int]) -> np.ndarray:
    """A zero-copy W carrying [N, K] for reports of layers that are never profiled."""
    return np.broadcast_to(np.float32(0), shape)


def matmul_layer(node: ir.Node, name: str, b: np.ndarray) -> Layer:
    x = node.inputs[0]
    w = np.ascontiguousarray(b.T, np.float32) if b.ndim == 2 else b
    r = rank(x)
    skip = ""
    if b.ndim != 2:
        skip = f"weight has rank {b.ndim}, only 2-D weights are supported"
    elif r is None:
        skip = "the activation's rank is unknown after shape inference"
    elif r < 2:
        skip = "the activation is a vector (rank 1)"
    return Layer(name, "MatMul", _input_name(node, 1), w, node=node, rows=_rows(x), skip=skip)


def _gemm(node: ir.Node, name: str, b: np.ndarray) -> Layer:
    alpha = float(attr(node, "alpha", 1.0))
    beta = float(attr(node, "beta", 1.0))
    trans_a = bool(attr(node, "transA", 0))
    w = np.ascontiguousarray(alpha * (b if attr(node, "transB", 0) else b.T), np.float32)
    n = int(w.shape[0])
    rows: int | None = None
    shape = dims(node.inputs[0])
    if shape and len(shape) == 2:
        r = shape[1] if trans_a else shape[0]
        rows = r if isinstance(r, int) else None
    skip, bias = "", None
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        c = constant(node.inputs[2])
        if c is None:
            skip = "Gemm's C is not a constant"
        elif c.dtype != np.float32 or c.size not in (1, n) or (c.ndim >= 1 and c.shape[-1] not in (1, n)):
            skip = f"Gemm's C has shape {list(c.shape)}, not broadcastable to a bias of {n}"
        else:
            bias = np.ascontiguousarray(np.broadcast_to(beta * c.reshape(-1), (n,)), np.float32)
    return Layer(name, "Gemm", _input_name(node, 1), w, node=node, bias=bias, trans_a=trans_a, rows=rows, skip=skip)


def _conv_geometry(node: ir.Node, b: np.ndarray) -> tuple[ConvGeometry | None, str]:
    """The static geometry of a Conv, or (None, why it stays on ORT)."""
    if b.ndim != 4:
        return None, f"only 2-D convolutions are compiled (weight has rank {b.ndim})"
    group = int(attr(node, "group", 1))
    if group != 1:
        kind = "depthwise" if group == b.shape[0] and b.shape[1] == 1 else "grouped"
        return None, f"{kind} convolution (group={group}) stays on ONNX Runtime"
    shape = dims(node.inputs[0])
    if not shape or len(shape) != 4 or not isinstance(shape[1], int):
        return None, "the input's rank and channels must be static after shape inference"
    c = int(shape[1])
    static = all(isinstance(d, int) for d in shape[2:])
    kh, kw = (int(d) for d in b.shape[2:])
    sh, sw = (int(v) for v in attr(node, "strides", [1, 1]))
    dh, dw = (int(v) for v in attr(node, "dilations", [1, 1]))
    pt, pl, pb, pr = (int(v) for v in attr(node, "pads", [0, 0, 0, 0]))
    auto_pad = str(attr(node, "auto_pad", "NOTSET"))
    if c != b.shape[1]:
        return None, f"input has {c} channels, the weight expects {b.shape[1]}"
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if not static and (sh, sw) != (1, 1):
            return None, "auto_pad SAME with a stride and a symbolic spatial size (the pads depend on the size)"
        upper = auto_pad == "SAME_UPPER"
        h_, w_ = (int(d) for d in shape[2:]) if static else (1, 1)  # type: ignore[arg-type]  # stride 1: any size
        (pt, pb), (pl, pr) = same_pads(h_, kh, sh, dh, upper), same_pads(w_, kw, sw, dw, upper)
    elif auto_pad == "VALID":
        pt = pl = pb = pr = 0
    try:
        if not static:  # sized at run time; ranked at an assumed size (select refines it from --dim)
            return runtime_geometry(c, kh, kw, sh, sw, dh, dw, (pt, pl, pb, pr)), ""
        h, w = (int(d) for d in shape[2:])  # type: ignore[arg-type]
        return ConvGeometry(c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr), ""
    except ValueError as e:
        return None, str(e)


def conv_layer(node: ir.Node, name: str, b: np.ndarray, has_bias: bool = True) -> Layer:
    """A Conv: W[Cout, Cin*kh*kw], its bias (input 2, when ``has_bias``) and geometry; grouped/depthwise ones stay
    on ORT."""
    w = np.ascontiguousarray(b.reshape(b.shape[0], -1), np.float32)
    geom, skip = _conv_geometry(node, b)
    bias = None
    if has_bias and len(node.inputs) > 2 and node.inputs[2] is not None:
        c = constant(node.inputs[2])
        if c is None or c.dtype != np.float32 or c.shape != (w.shape[0],):
            skip = skip or "Conv's bias is not a constant float32 vector"
        else:
            bias = np.ascontiguousarray(c, np.float32)
    rows, reorder = None, 0
    if geom is not None:
        shape = dims(node.inputs[0]) or [None]
        batch = shape[0] if isinstance(shape[0], int) else 1
        rows = batch * geom.P  # pixels are the "rows" of the product (cost model M)
        reorder = batch * reorder_elements(node, sizes=image_sizes(geom, int(w.shape[0])))
    return Layer(
        name, "Conv", _input_name(node, 1), w, node=node, bias=bias, rows=rows, skip=skip, geom=geom, reorder=reorder
    )


def _input_name(node: ir.Node, i: int) -> str:
    v = node.inputs[i]
    return str(v.name) if v is not None else ""


BUILDERS: dict[str, Callable[[ir.Node, str, np.ndarray], Layer]] = {
    "MatMul": matmul_layer,
    "Gemm": _gemm,
    "Conv": conv_layer,
}


def find_layers(graph: ir.Graph) -> list[Layer]:
    """Every MatMul/Gemm/Conv whose weight is a constant, in graph order, with its weight profiled."""
    names: set[str] = set()
    layers: list[Layer] = []
    for i, node in enumerate(graph):
        if node.domain in ("", "ai.onnx") and node.op_type in INTEGER_OPS:
            at = weight_input(node.op_type)
            b = constant(node.inputs[at]) if len(node.inputs) > at else None
            if b is None:
                continue  # activation x activation (attention scores), as for MatMul
            name = _safe(node.name or f"{node.op_type}_{i}", names)
            layer = integer_layer(node, name, b, _input_name(node, at))
            if not layer.skip:
                layer = replace(layer, profile=profile_weight(layer.w))
            layers.append(layer)
            continue
        if node.domain not in ("", "ai.onnx") or node.op_type not in BUILDERS or len(node.inputs) < 2:
            continue
        b = constant(node.inputs[1])
        if b is None:
            continue  # activation x activation (e.g. attention scores): not a weight
        name = _safe(node.name or f"{node.op_type}_{i}", names)
        if b.dtype != np.float32:
            shape = (b.shape[-1], math.prod(b.shape[:-1])) if b.ndim >= 2 else (b.size, 1)
            skip = f"weight is {b.dtype}, sparse kernels take float32: left to ONNX Runtime"
            layers.append(
                Layer(
                    name,
                    node.op_type,
                    _input_name(node, 1),
                    placeholder(shape),
                    node=node,
                    skip=skip,
                    weight_dtype=str(b.dtype),
                )
            )
            continue
        layer = BUILDERS[node.op_type](node, name, b)
        source = node.inputs[1].meta.get(SOURCE_DTYPE) if node.inputs[1] is not None else None
        if source:
            layer = replace(layer, weight_dtype=str(source))
        bad = int(b.size - np.count_nonzero(np.isfinite(b)))
        if bad:
            layer = replace(layer, nonfinite=bad, skip=f"weight has {bad} NaN/Inf values")
        if layer.w.ndim == 2 and layer.w.size:
            layer = replace(layer, profile=profile_weight(layer.w))
        if source and node.op_type == "MatMul" and not layer.skip:  # a QDQ layer: int8 kernels may run it
            qdq = qdq_operands(node)
            if qdq is not None and np.array_equal(qdq.w_int != 0, layer.w != 0):  # the weight as folded (not shrunk)
                layer = replace(layer, qdq=qdq)
        elif node.op_type == "MatMul" and not layer.skip:
            layer = replace(layer, absorbed=absorbed_nodes(node, layer.n))
        layers.append(layer)
    return share(layers)
