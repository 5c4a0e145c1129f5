"""Analysis (read-only): find the layers with constant weights and profile each weight's sparsity.

A *layer* is a MatMul, Gemm or Conv whose weight operand is a constant float32 tensor. Every weight is brought to
the W[N, K] orientation of docs/internals.md; Gemm's alpha is folded into W and beta * C becomes a bias vector; a
Conv's [Cout, Cin, kh, kw] weight becomes W[Cout, Cin*kh*kw] with its static geometry (sparsec/conv.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import onnx

from sparsec.conv import ConvGeometry, same_pads
from sparsec.formats import BLOCK_SHAPES, NM_PATTERNS, get_format
from sparsec.formats.bsr import Bsr

from .graph import GraphIndex, attr
from .layout import reorder_elements


@dataclass
class Layer:
    """One candidate layer of the graph (``skip`` says why it cannot become a sparse node, empty when it can)."""

    name: str  # unique, safe for initializer names
    index: int  # position in graph.node when found
    node: onnx.NodeProto
    op: str
    weight_name: str
    w: np.ndarray  # W[N, K] float32 (Gemm: alpha folded in)
    bias: np.ndarray | None = None  # Gemm: beta * C as f32[N]
    trans_a: bool = False
    rows: int | None = None  # M when the activation's leading dims are static
    skip: str = ""
    nonfinite: int = 0  # NaN/Inf entries in the weight: compiling refuses them, inspect reports them
    profile: WeightProfile | None = field(default=None, repr=False)
    geom: ConvGeometry | None = None  # Conv layers that can become sparse
    reorder: int = 0  # Conv: elements ORT would convert to/from NCHWc around it if it became sparse (passes/layout)

    @property
    def n(self) -> int:
        return int(self.w.shape[0])

    @property
    def k(self) -> int:
        return int(self.w.shape[1])


@dataclass
class WeightProfile:
    """The sparsity structure of W[N, K]: what each format would store."""

    n: int
    k: int
    nnz: int
    nm: dict[str, float]  # "2:4" -> fraction of groups that conform
    block_fill: dict[str, float]  # "16x1" -> nonzeros / values stored in nonzero blocks (1.0: perfectly blocked)
    block_count: dict[str, int]  # "16x1" -> nonzero blocks
    zero_rows: int
    zero_cols: int

    @property
    def density(self) -> float:
        return self.nnz / max(1, self.n * self.k)

    def stored(self, fmt: str, w: np.ndarray | None = None) -> int:
        """Values a format stores for this weight (explicit zeros in blocks and N:M slots included)."""
        if fmt == "dense":
            return self.n * self.k
        if fmt == "csr":
            return self.nnz
        f = get_format(fmt)
        if fmt.startswith("bsr:"):
            key = f"{f.r}x{f.c}"
            if key not in self.block_count:
                if w is None:
                    raise KeyError(fmt)
                self.block_count[key] = _nonzero_blocks(w, f.r, f.c)
            return self.block_count[key] * f.r * f.c
        return self.n * (-(-self.k // f.m)) * f.n  # nm


def _nonzero_blocks(w: np.ndarray, r: int, c: int) -> int:
    if w.shape[0] < r or w.shape[1] < c:
        return 0
    return int(np.count_nonzero(np.any(Bsr(r, c).blocks(w) != 0, axis=(2, 3))))


def profile_weight(w: np.ndarray) -> WeightProfile:
    """Sparsity profile of W[N, K] for every N:M pattern and block shape in the registry."""
    n, k = w.shape
    nz = w != 0
    nnz = int(np.count_nonzero(nz))
    nm = {f"{a}:{b}": get_format(f"nm:{a}:{b}").conformity(w) for a, b in NM_PATTERNS}
    fill: dict[str, float] = {}
    count: dict[str, int] = {}
    for r, c in BLOCK_SHAPES:
        if n < r or k < c:
            continue
        blocks = _nonzero_blocks(w, r, c)
        count[f"{r}x{c}"] = blocks
        fill[f"{r}x{c}"] = nnz / (blocks * r * c) if blocks else 1.0
    zero_rows = int(np.count_nonzero(~nz.any(axis=1)))
    zero_cols = int(np.count_nonzero(~nz.any(axis=0)))
    return WeightProfile(n, k, nnz, nm, fill, count, zero_rows, zero_cols)


def _safe(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.]", "_", name).strip("_.") or "layer"
    out, i = base, 1
    while out in taken:
        i += 1
        out = f"{base}_{i}"
    taken.add(out)
    return out


def _rows(idx: GraphIndex, x: str) -> int | None:
    shape = idx.shapes.get(x)
    if not shape or any(not isinstance(d, int) for d in shape[:-1]):
        return None
    return int(np.prod(shape[:-1])) if len(shape) > 1 else 1


def _matmul(idx: GraphIndex, index: int, node: onnx.NodeProto, name: str, b: np.ndarray) -> Layer:
    x = node.input[0]
    layer = Layer(
        name, index, node, "MatMul", node.input[1], np.ascontiguousarray(b.T, np.float32) if b.ndim == 2 else b
    )
    rank = idx.rank(x)
    if b.ndim != 2:
        layer.skip = f"weight has rank {b.ndim}, only 2-D weights are supported"
    elif rank is None:
        layer.skip = "the activation's rank is unknown after shape inference"
    elif rank < 2:
        layer.skip = "the activation is a vector (rank 1)"
    layer.rows = _rows(idx, x)
    return layer


def _gemm(idx: GraphIndex, index: int, node: onnx.NodeProto, name: str, b: np.ndarray) -> Layer:
    alpha = float(attr(node, "alpha", 1.0))
    beta = float(attr(node, "beta", 1.0))
    w = b if attr(node, "transB", 0) else b.T
    layer = Layer(name, index, node, "Gemm", node.input[1], np.ascontiguousarray(alpha * w, np.float32))
    layer.trans_a = bool(attr(node, "transA", 0))
    shape = idx.shapes.get(node.input[0])
    if shape and len(shape) == 2:
        layer.rows = shape[1] if layer.trans_a else shape[0]
        layer.rows = layer.rows if isinstance(layer.rows, int) else None
    if len(node.input) > 2 and node.input[2]:
        c = idx.constant(node.input[2])
        n = layer.n
        if c is None:
            layer.skip = "Gemm's C is not a constant"
        elif c.dtype != np.float32 or c.size not in (1, n) or (c.ndim >= 1 and c.shape[-1] not in (1, n)):
            layer.skip = f"Gemm's C has shape {list(c.shape)}, not broadcastable to a bias of {n}"
        else:
            layer.bias = np.ascontiguousarray(np.broadcast_to(beta * c.reshape(-1), (n,)), np.float32)
    return layer


QUANTIZED = {"MatMulInteger": 1, "QLinearMatMul": 3, "ConvInteger": 1, "QLinearConv": 3}  # op -> weight input


def _quantized(idx: GraphIndex, index: int, node: onnx.NodeProto, names: set[str]) -> Layer | None:
    """A quantized layer with a constant weight: listed so reports are complete, always left to ORT."""
    at = QUANTIZED[node.op_type]
    b = idx.constant(node.input[at]) if len(node.input) > at else None
    if b is None:
        return None
    rows = b.shape[0] if node.op_type.endswith("Conv") else (b.shape[-1] if b.ndim else 1)
    shape = (int(rows), int(b.size // max(rows, 1)))
    w = np.broadcast_to(np.float32(0), shape)  # zero-copy placeholder carrying [N, K] for reports
    name = _safe(node.name or f"{node.op_type}_{index}", names)
    skip = f"quantized {b.dtype} layer: sparse kernels take float32, left to ONNX Runtime"
    return Layer(name, index, node, node.op_type, node.input[at], w, skip=skip)


def _conv_geometry(idx: GraphIndex, node: onnx.NodeProto, b: np.ndarray) -> tuple[ConvGeometry | None, str]:
    """The static geometry of a Conv, or (None, why it stays on ORT)."""
    if b.ndim != 4:
        return None, f"only 2-D convolutions are compiled (weight has rank {b.ndim})"
    group = int(attr(node, "group", 1))  # type: ignore[arg-type]
    if group != 1:
        kind = "depthwise" if group == b.shape[0] and b.shape[1] == 1 else "grouped"
        return None, f"{kind} convolution (group={group}) stays on ONNX Runtime"
    shape = idx.shapes.get(node.input[0])
    if not shape or len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
        return None, "the input's channels and spatial size must be static after shape inference"
    c, h, w = (int(d) for d in shape[1:])  # type: ignore[arg-type]
    kh, kw = (int(d) for d in b.shape[2:])
    sh, sw = (int(v) for v in attr(node, "strides", [1, 1]))  # type: ignore[union-attr]
    dh, dw = (int(v) for v in attr(node, "dilations", [1, 1]))  # type: ignore[union-attr]
    pt, pl, pb, pr = (int(v) for v in attr(node, "pads", [0, 0, 0, 0]))  # type: ignore[union-attr]
    auto_pad = str(attr(node, "auto_pad", "NOTSET"))
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        upper = auto_pad == "SAME_UPPER"
        (pt, pb), (pl, pr) = same_pads(h, kh, sh, dh, upper), same_pads(w, kw, sw, dw, upper)
    elif auto_pad == "VALID":
        pt = pl = pb = pr = 0
    if c != b.shape[1]:
        return None, f"input has {c} channels, the weight expects {b.shape[1]}"
    try:
        return ConvGeometry(c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr), ""
    except ValueError as e:
        return None, str(e)


def conv_layer(idx: GraphIndex, index: int, node: onnx.NodeProto, name: str, b: np.ndarray) -> Layer:
    """A Conv: W[Cout, Cin*kh*kw], its bias (input 2) and geometry; grouped/depthwise ones stay on ORT."""
    w = np.ascontiguousarray(b.reshape(b.shape[0], -1), np.float32)
    layer = Layer(name, index, node, "Conv", node.input[1], w)
    layer.geom, layer.skip = _conv_geometry(idx, node, b)
    if len(node.input) > 2 and node.input[2]:
        bias = idx.constant(node.input[2])
        if bias is None or bias.dtype != np.float32 or bias.shape != (layer.n,):
            layer.skip = layer.skip or "Conv's bias is not a constant float32 vector"
        else:
            layer.bias = np.ascontiguousarray(bias, np.float32)
    if layer.geom is not None:
        shape = idx.shapes.get(node.input[0]) or [None]
        batch = shape[0] if isinstance(shape[0], int) else 1
        layer.rows = batch * layer.geom.P  # pixels are the "rows" of the product (cost model M)
        layer.reorder = batch * reorder_elements(idx, node)
    return layer


def find_layers(model: onnx.ModelProto) -> list[Layer]:
    """Every MatMul/Gemm/Conv whose weight is a constant, in graph order, with its weight profiled."""
    idx = GraphIndex(model)
    names: set[str] = set()
    layers: list[Layer] = []
    for i, node in enumerate(model.graph.node):
        if node.domain in ("", "ai.onnx") and node.op_type in QUANTIZED:
            layer = _quantized(idx, i, node, names)
            if layer is not None:
                layers.append(layer)
            continue
        if node.domain not in ("", "ai.onnx") or node.op_type not in ("MatMul", "Gemm", "Conv") or len(node.input) < 2:
            continue
        b = idx.constant(node.input[1])
        if b is None:
            continue  # activation x activation (e.g. attention scores): not a weight
        name = _safe(node.name or f"{node.op_type}_{i}", names)
        if b.dtype != np.float32:
            # A zero-copy placeholder keeps the [N, K] shape for reports; nothing is profiled.
            shape = (b.shape[-1], int(np.prod(b.shape[:-1]))) if b.ndim >= 2 else (b.size, 1)
            w = np.broadcast_to(np.float32(0), shape)
            skip = f"weight is {b.dtype}, sparse kernels take float32: left to ONNX Runtime"
            layer = Layer(name, i, node, node.op_type, node.input[1], w, skip=skip)
        else:
            layer = {"MatMul": _matmul, "Gemm": _gemm, "Conv": conv_layer}[node.op_type](idx, i, node, name, b)
            bad = int(b.size - np.count_nonzero(np.isfinite(b)))
            if bad:
                layer.nonfinite = bad
                layer.skip = f"weight has {bad} NaN/Inf values"
        if layer.w.ndim == 2 and layer.w.size and b.dtype == np.float32:
            layer.profile = profile_weight(layer.w)
        layers.append(layer)
    return layers
