"""Magnitude pruning for ``sparsec prune``: zero the smallest weights of MatMul / Gemm / Conv layers.

Magnitude pruning without fine-tuning loses accuracy. It is here to try the compiler on dense models, and is no
substitute for pruning with fine-tuning. Weights are pruned in the W[N, K] orientation of docs/internals.md (one row
per output), so N:M groups run along K and RxC blocks cover R outputs x C inputs, as the sparse formats pack them.

Ties in magnitude are broken by position (the earlier element in row-major W[N, K] order is kept), so the result is
deterministic. NaN weights count as the largest magnitude (they are kept, never silently turned into zeros).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, TypedDict

import numpy as np
import onnx

from .errors import SparsecError
from .layer import INTEGER_OPS
from .weight_source import WeightSource, find_source, integer_source, stored_tensors

PatternKind = Literal["unstructured", "block", "nm"]

ACCEPTED = (
    "unstructured:S, block:RxC:S (S = sparsity in [0, 1), e.g. 0.9 = 90% zeros; R, C in 1..64) "
    "or nm:N:M (keep N of every M inputs, 1 <= N < M <= 255)"
)
MAX_BLOCK = 64
MAX_GROUP = 255  # nm positions are stored as uint8

_NUM = r"(\d+(?:\.\d*)?|\.\d+)"
_UNSTRUCTURED = re.compile(rf"unstructured:{_NUM}")
_BLOCK = re.compile(rf"block:(\d+)x(\d+):{_NUM}")
_NM = re.compile(r"nm:(\d+):(\d+)")

# op type -> allowed ranks of its weight (operand 1)
_LAYER_RANKS: dict[str, tuple[int, int]] = {
    "MatMul": (2, 2), "Gemm": (2, 2), "Conv": (3, 5), "MatMulInteger": (2, 2), "ConvInteger": (3, 5),
    "QLinearMatMul": (2, 2), "QLinearConv": (3, 5),
}  # fmt: skip


@dataclass(frozen=True)
class PrunePattern:
    """What to prune to. ``str(pattern)`` gives the canonical ``--pattern`` spelling."""

    kind: PatternKind
    sparsity: float = 0.0  # unstructured: fraction of values zeroed; block: fraction of blocks zeroed
    rows: int = 1  # block: R output rows per block
    cols: int = 1  # block: C input columns per block
    n: int = 0  # nm: values kept per group
    m: int = 0  # nm: group size (consecutive inputs along K)

    def __str__(self) -> str:
        if self.kind == "unstructured":
            return f"unstructured:{self.sparsity:g}"
        if self.kind == "block":
            return f"block:{self.rows}x{self.cols}:{self.sparsity:g}"
        return f"nm:{self.n}:{self.m}"


class PruneStats(TypedDict):
    """One pruned weight: stored name, op of its first use, stored shape, densities of the weight as the layer sees
    it (nonzeros / size)."""

    name: str
    op: str
    shape: list[int]
    density_before: float
    density_after: float


def _bad_pattern(text: str, why: str) -> SparsecError:
    return SparsecError(f"bad --pattern {text[:80]!r}: {why}; expected {ACCEPTED}")


def _sparsity(text: str, raw: str) -> float:
    s = float(raw)
    if not 0.0 <= s < 1.0:
        raise _bad_pattern(text, f"sparsity {raw} is not in [0, 1)")
    return s


def parse_pattern(text: str) -> PrunePattern:
    """Parse ``unstructured:S``, ``block:RxC:S`` or ``nm:N:M``; anything else is a one-line SparsecError."""
    spec = text.strip()
    if m := _UNSTRUCTURED.fullmatch(spec):
        return PrunePattern("unstructured", sparsity=_sparsity(text, m[1]))
    if m := _BLOCK.fullmatch(spec):
        r, c = int(m[1]), int(m[2])
        if not (1 <= r <= MAX_BLOCK and 1 <= c <= MAX_BLOCK):
            raise _bad_pattern(text, f"block shape {r}x{c} out of range (1..{MAX_BLOCK})")
        return PrunePattern("block", sparsity=_sparsity(text, m[3]), rows=r, cols=c)
    if m := _NM.fullmatch(spec):
        n, g = int(m[1]), int(m[2])
        if not 1 <= n < g <= MAX_GROUP:
            raise _bad_pattern(text, f"N:M = {n}:{g} needs 1 <= N < M <= {MAX_GROUP}")
        return PrunePattern("nm", n=n, m=g)
    raise _bad_pattern(text, "unknown spelling")


# ---------------------------------------------------------------------------------------------- one weight W[N, K]


def _score(a: np.ndarray) -> np.ndarray:
    """Magnitudes as a ranking score: NaN ranks highest (kept)."""
    mag = np.abs(a)
    return np.where(np.isnan(mag), np.inf, mag)


def _keep_count(sparsity: float, size: int) -> int:
    return min(size, max(0, round((1.0 - sparsity) * size)))


def _keep_largest(score: np.ndarray, keep: int) -> np.ndarray:
    """Boolean mask of exactly ``keep`` largest scores; among equal scores the lowest flat index wins."""
    flat = score.ravel()
    if keep >= flat.size:
        return np.ones(score.shape, dtype=bool)
    if keep <= 0:
        return np.zeros(score.shape, dtype=bool)
    cut = np.partition(flat, flat.size - keep)[flat.size - keep]  # the keep-th largest score
    mask = flat > cut
    ties = np.flatnonzero(flat == cut)[: keep - int(mask.sum())]
    mask[ties] = True
    return mask.reshape(score.shape)


def _mask_unstructured(w: np.ndarray, sparsity: float) -> np.ndarray:
    return _keep_largest(_score(w), _keep_count(sparsity, w.size))


def _mask_blocks(w: np.ndarray, r: int, c: int, sparsity: float) -> np.ndarray:
    """Keep the blocks with the largest L2 norm; edge blocks past N or K are partial (only their real entries)."""
    n, k = w.shape
    nb, kb = -(-n // r), -(-k // c)
    padded = np.zeros((nb * r, kb * c), np.float64)
    padded[:n, :k] = w
    norms = np.sqrt(np.square(padded).reshape(nb, r, kb, c).sum(axis=(1, 3)))
    keep = _keep_largest(_score(norms), _keep_count(sparsity, norms.size))
    return np.repeat(np.repeat(keep, r, axis=0), c, axis=1)[:n, :k]


def _mask_nm(w: np.ndarray, n_keep: int, m: int) -> np.ndarray:
    """Keep the ``n_keep`` largest of every ``m`` consecutive inputs; the last group is padded with losers."""
    n, k = w.shape
    groups = -(-k // m)
    score = np.full((n, groups * m), -1.0)  # padding ranks below every real weight (|w| >= 0)
    score[:, :k] = _score(w)
    order = np.argsort(-score.reshape(n, groups, m), axis=2, kind="stable")[:, :, :n_keep]
    mask = np.zeros((n, groups, m), dtype=bool)
    np.put_along_axis(mask, order, True, axis=2)
    return mask.reshape(n, groups * m)[:, :k]


def prune_weight(w: np.ndarray, pattern: PrunePattern) -> np.ndarray:
    """Magnitude-prune W[N, K] (one row per output) to ``pattern``; returns a new float32 array, ``w`` untouched.

    unstructured: exactly round((1 - S) * N * K) entries kept. block: exactly round((1 - S) * blocks) RxC blocks kept,
    ranked by L2 norm. nm: at most N nonzeros in each group of M consecutive inputs along K (the largest N).
    """
    if w.ndim != 2:
        raise ValueError(f"prune_weight expects W[N, K], got shape {w.shape}")
    w = np.asarray(w, dtype=np.float32)
    if pattern.kind == "unstructured":
        mask = _mask_unstructured(w, pattern.sparsity)
    elif pattern.kind == "block":
        mask = _mask_blocks(w, pattern.rows, pattern.cols, pattern.sparsity)
    elif pattern.kind == "nm":
        mask = _mask_nm(w, pattern.n, pattern.m)
    else:
        raise ValueError(f"unknown pattern kind {pattern.kind!r}")
    return np.where(mask, w, np.float32(0)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- a whole model


def _weight_is_transposed(node: onnx.NodeProto) -> bool:
    """True when the stored weight is B[K, N] (W = B.T): MatMul, and Gemm without transB."""
    if node.op_type in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        return True
    if node.op_type == "Gemm":
        return not next((a.i for a in node.attribute if a.name == "transB"), 0)
    return False  # Conv: [Cout, Cin/group, *kernel] -> W = weight.reshape(Cout, -1)


def to_rows(node: onnx.NodeProto, b: np.ndarray) -> np.ndarray:
    """The stored weight of ``node`` in W[N, K] orientation."""
    return b.T if _weight_is_transposed(node) else b.reshape(b.shape[0], -1)


def from_rows(node: onnx.NodeProto, w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`to_rows`: W[N, K] back to the layout ``node`` stores (C-contiguous)."""
    return np.ascontiguousarray(w.T if _weight_is_transposed(node) else w.reshape(shape))


def _weight_uses(graph: onnx.GraphProto) -> Iterator[tuple[onnx.NodeProto, WeightSource]]:
    """(layer node, where its weight is stored), in graph order; the tensor is an initializer or a Constant node's
    ``value`` (paddle2onnx and others keep every weight in Constant nodes), reached through Identity / Cast /
    Transpose / DequantizeLinear nodes (weight_source.py); a shared weight appears each time."""
    stored = stored_tensors(graph)
    producers = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        ranks = _LAYER_RANKS.get(node.op_type)
        if ranks is None or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        if node.op_type in INTEGER_OPS:  # onnxruntime.quantization's dynamic / QOperator modes: the int8 weight
            source = integer_source(node, stored)
        else:
            source = find_source(node.input[1], producers, stored)
        if source is not None and ranks[0] <= len(source.tensor.dims) <= ranks[1]:
            yield node, source


def _density(a: np.ndarray) -> float:
    return float(np.count_nonzero(a)) / a.size if a.size else 0.0


def _prune_source(node: onnx.NodeProto, source: WeightSource, pattern: PrunePattern) -> PruneStats:
    """Prune one stored weight in place, ranked as ``node`` sees it (after the chain of pass-through nodes)."""
    b = source.effective()
    keep = from_rows(node, prune_weight(to_rows(node, b), pattern) != 0, b.shape)
    source.write(keep)
    return {
        "name": source.name,
        "op": node.op_type,
        "shape": [int(d) for d in source.tensor.dims],
        "density_before": _density(b),
        "density_after": _density(source.effective()),
    }


def prune_model(
    model: onnx.ModelProto, pattern: PrunePattern, *, label: str = "the model"
) -> tuple[onnx.ModelProto, list[PruneStats]]:
    """A pruned copy of ``model`` (the argument is untouched) and one stats record per pruned weight.

    Pruned: initializers and Constant-node values of the main graph used as operand 1 of MatMul (rank 2), Gemm
    (rank 2, transB respected) or Conv (rank 3-5), directly or through Identity / Cast / Transpose / DequantizeLinear
    (float sources, or int8/uint8/int16/uint16 behind a DequantizeLinear: pruned values become its zero point), and the
    int8/uint8 weights of MatMulInteger / ConvInteger / QLinearMatMul / QLinearConv (ranked less their zero point,
    pruned to it). A
    weight shared by several layers is pruned once, oriented as its first use. Other computed weights and subgraphs
    are left alone. ``label`` names the model in the error when
    nothing qualifies.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    done: set[str] = set()
    stats: list[PruneStats] = []
    for node, source in _weight_uses(out.graph):
        if source.name in done:
            continue
        stats.append(_prune_source(node, source, pattern))
        done.add(source.name)
    if not stats:
        raise SparsecError(
            f"no MatMul/Gemm/Conv weight to prune in {label} (need a float32 weight stored as an initializer or "
            "Constant node, as operand 1 or behind Identity, Cast, Transpose or DequantizeLinear, or the int8 weight "
            "of a MatMulInteger / ConvInteger / QLinearMatMul / QLinearConv)"
        )
    return out, stats
