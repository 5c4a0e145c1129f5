"""BSR template (``data`` f32[nnzb, R, C], ``indices`` i32[nnzb] = start column, ``indptr`` i32[ceil(N/R)+1]).

Block row i writes output rows rs = min(i*R, N-R) .. rs+R (the shifted last block row rewrites overlapping rows with
identical values, so two threads racing on them store the same bits). A shifted last block column holds zeros for
already-covered columns, so every block is simply added.

Variants:
- ``rows`` (R a multiple of the vector width, e.g. 16x1 / 8x1): no transpose; the R outputs of a block row are the
  vector lanes, ``mu`` rows of X at a time give mu*R/vw independent accumulators.
- ``xt``: X transposed into a padded workspace; acc[R, mu, vw] reuses each XT vector for the R rows of a block.
"""

from __future__ import annotations

from typing import Any

from ...tir import EpilogueFn
from .common import padded, transpose_macro


def xt(K: int, N: int, R: int, C: int, nnzb: int, vw: int, epi: EpilogueFn, mu: int = 1) -> Any:  # noqa: N803
    """BSR with X transposed, vectorized over the batch."""
    from tvm.script import tirx as T

    transpose_x = transpose_macro()
    nbr = -(-N // R)
    mt = vw * mu

    @T.macro
    def tile(Y, XT, data, indices, indptr, bias, R_, M, ib, m0, U):  # noqa: N803
        acc = T.alloc_buffer((R, U, vw), "float32", scope="global")
        for r in T.unroll(R):
            for u in T.unroll(U):
                for v in T.vectorized(vw):
                    acc[r, u, v] = T.float32(0)
        for e in range(indptr[ib], indptr[ib + 1]):
            for c in T.unroll(C):
                for r in T.unroll(R):
                    for u in T.unroll(U):
                        for v in T.vectorized(vw):
                            acc[r, u, v] = acc[r, u, v] + data[e, r, c] * XT[indices[e] + c, m0 + u * vw + v]
        out = T.alloc_buffer((R, U, vw), "float32", scope="global")
        for r in T.unroll(R):
            for u in T.unroll(U):
                for v in T.vectorized(vw):
                    out[r, u, v] = acc[r, u, v]
        for r in range(R):  # not unrolled: one vectorized copy of the epilogue (code size, compile time)
            for u in range(U):
                for v in T.vectorized(vw):
                    out[r, u, v] = epi(out[r, u, v], bias, R_, T.min(m0 + u * vw + v, M - 1), T.min(ib * R, N - R) + r)
                for v in range(vw):
                    if m0 + u * vw + v < M:
                        Y[m0 + u * vw + v, T.min(ib * R, N - R) + r] = out[r, u, v]

    @T.prim_func
    def kernel(
        x: T.handle,
        data: T.Buffer((nnzb, R, C), "float32"),
        indices: T.Buffer((nnzb,), "int32"),
        indptr: T.Buffer((nbr + 1,), "int32"),
        bias: T.Buffer((N,), "float32"),
        r: T.handle,
        y: T.handle,
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        M = T.int64()
        X = T.match_buffer(x, (M, K), "float32")
        Res = T.match_buffer(r, (M, N), "float32")
        Y = T.match_buffer(y, (M, N), "float32")
        XT = T.alloc_buffer((K, padded(M, vw)), "float32")
        transpose_x(X, XT, M, K, padded(M, vw))
        for ib in T.parallel(nbr):
            for t in range(padded(M, vw) // mt):
                tile(Y, XT, data, indices, indptr, bias, Res, M, ib, t * mt, mu)
            for t in range(padded(M, vw) % mt // vw):
                tile(Y, XT, data, indices, indptr, bias, Res, M, ib, padded(M, vw) // mt * mt + t * vw, 1)

    return kernel


def rows(K: int, N: int, R: int, C: int, nnzb: int, vw: int, epi: EpilogueFn, mu: int = 4) -> Any:  # noqa: N803
    """BSR vectorized over the R rows of a block (R % vw == 0): no workspace, X read in place."""
    from tvm.script import tirx as T

    nbr = -(-N // R)

    @T.macro
    def tile(X, Y, data, indices, indptr, bias, R_, ib, m0, U):  # noqa: N803
        acc = T.alloc_buffer((U, R), "float32", scope="global")
        for u in T.unroll(U):
            for r in T.vectorized(R):
                acc[u, r] = T.float32(0)
        for e in range(indptr[ib], indptr[ib + 1]):
            for c in T.unroll(C):
                for u in T.unroll(U):
                    for r in T.vectorized(R):
                        acc[u, r] = acc[u, r] + X[m0 + u, indices[e] + c] * data[e, r, c]
        out = T.alloc_buffer((U, R), "float32", scope="global")
        for u in T.unroll(U):
            for r in T.vectorized(R):
                out[u, r] = acc[u, r]
        for u in range(U):  # not unrolled: one vectorized copy of the epilogue (code size, compile time)
            for r in T.vectorized(R):
                Y[m0 + u, T.min(ib * R, N - R) + r] = epi(out[u, r], bias, R_, m0 + u, T.min(ib * R, N - R) + r)

    @T.prim_func
    def kernel(
        x: T.handle,
        data: T.Buffer((nnzb, R, C), "float32"),
        indices: T.Buffer((nnzb,), "int32"),
        indptr: T.Buffer((nbr + 1,), "int32"),
        bias: T.Buffer((N,), "float32"),
        r: T.handle,
        y: T.handle,
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        M = T.int64()
        X = T.match_buffer(x, (M, K), "float32")
        Res = T.match_buffer(r, (M, N), "float32")
        Y = T.match_buffer(y, (M, N), "float32")
        for ib in T.parallel(nbr):
            for t in range(M // mu):
                tile(X, Y, data, indices, indptr, bias, Res, ib, t * mu, mu)
            for t in range(M % mu):
                tile(X, Y, data, indices, indptr, bias, Res, ib, M // mu * mu + t, 1)

    return kernel
