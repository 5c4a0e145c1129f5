"""BSR template (``data`` f32[nnzb, R, C], ``indices`` i32[nnzb] = start column, ``indptr`` i32[ceil(N/R)+1]).

Block row i writes output rows rs = min(i*R, N-R) .. rs+R (the shifted last block row rewrites overlapping rows with
identical values, so two threads racing on them store the same bits). A shifted last block column holds zeros for
already-covered columns, so every block is simply added.

Variants:
- ``rows`` (R a multiple of the vector width, e.g. 16x1 / 8x1): no transpose; the R outputs of a block row are the
  vector lanes, ``mu`` rows of X at a time give mu*R/vw independent accumulators.
- ``xt``: X transposed into a padded workspace; acc[R, mu, vw] reuses each XT vector for the R rows of a block.
- ``rows_blocked`` (default where ``rows`` applies): ``rows`` with the loops turned: tasks own blocks of rows of X
  and run every block row against one tile of X at a time (X from L1, weights from L2), not all of X per block row.
- ``blocked`` (default otherwise): ``xt`` cache-blocked as csr's ``blocked`` (a tile of X transposed per task),
  with partial sums where a tile has fewer than ``CHAINS`` accumulators, and a no-transpose path for M < SMALL_M.
"""

from __future__ import annotations

from typing import Any

from ...tir import EpilogueFn
from .common import SMALL_M, TASKS, blocked_transpose_macro, padded, task_transpose_macro, transpose_macro


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


CHAINS = 8  # independent accumulators a tile of ``blocked`` keeps in flight (FMA latency x issue width)
ROWS_BLOCK = 64  # rows of X per task of ``rows_blocked``: its X block stays in L2 while all its block rows use it


def rows_blocked(K: int, N: int, R: int, C: int, nnzb: int, vw: int, epi: EpilogueFn, mu: int = 8) -> Any:  # noqa: N803
    """``rows`` (R % vw == 0: block rows as vector lanes, X read in place) with the loops turned around: each
    parallel task takes ``ROWS_BLOCK`` rows of X (and, when M gives fewer than ``TASKS`` such blocks, a share of the
    block rows) and for every tile of ``mu`` of its rows of X runs all its block rows, so the tile of X is reused
    from L1 across block rows and the weights stream from L2, instead of all of X once per block row."""
    from tvm.script import tirx as T

    nbr = -(-N // R)
    mb = ROWS_BLOCK

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
        for u in range(U):  # not unrolled: one vectorized copy of the epilogue (code size, compile time)
            for r in T.vectorized(R):
                Y[m0 + u, T.min(ib * R, N - R) + r] = epi(acc[u, r], bias, R_, m0 + u, T.min(ib * R, N - R) + r)

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
        if M < mu:  # fewer rows of X than one tile: block rows in parallel, as ``rows``
            for ib in T.parallel(nbr):
                for t in range(M):
                    tile(X, Y, data, indices, indptr, bias, Res, ib, t, 1)
        else:
            blocks = (M + mb - 1) // mb
            parts = T.max(1, T.min(nbr, (TASKS + blocks - 1) // blocks))
            per = (nbr + parts - 1) // parts
            for task in T.parallel(blocks * parts):
                m_lo = task // parts * mb
                cnt = T.min(M - m_lo, mb)
                part = task % parts
                count = T.max(0, T.min(nbr - part * per, per))
                # loops from 0 (TVM 0.27 mis-indexes a serial loop whose start is a run-time value)
                for t in range(cnt // mu):
                    for i in range(count):
                        tile(X, Y, data, indices, indptr, bias, Res, part * per + i, m_lo + t * mu, mu)
                for t in range(cnt % mu):
                    for i in range(count):
                        tile(X, Y, data, indices, indptr, bias, Res, part * per + i, m_lo + cnt // mu * mu + t, 1)

    return kernel


def _small_m_macro(N: int, R: int, C: int, epi: EpilogueFn) -> Any:  # noqa: N803
    """``dot_block_row(X, Y, data, indices, indptr, bias, R_, ib, m)``: block row ib of Y[m] for a few rows of X,
    with no transpose: vectors along the block's rows (R >= C) or along its columns, summed at the end (R < C)."""
    from tvm.script import tirx as T

    if R >= C:

        @T.macro
        def along_rows(X, Y, data, indices, indptr, bias, R_, ib, m):  # noqa: N803
            acc = T.alloc_buffer((R,), "float32", scope="global")
            for r in T.vectorized(R):
                acc[r] = T.float32(0)
            for e in range(indptr[ib], indptr[ib + 1]):
                for c in T.unroll(C):
                    for r in T.vectorized(R):
                        acc[r] = acc[r] + X[m, indices[e] + c] * data[e, r, c]
            for r in T.vectorized(R):
                Y[m, T.min(ib * R, N - R) + r] = epi(acc[r], bias, R_, m, T.min(ib * R, N - R) + r)

        return along_rows

    @T.macro
    def along_cols(X, Y, data, indices, indptr, bias, R_, ib, m):  # noqa: N803
        acc = T.alloc_buffer((R, C), "float32", scope="global")
        for r in T.unroll(R):
            for c in T.vectorized(C):
                acc[r, c] = T.float32(0)
        for e in range(indptr[ib], indptr[ib + 1]):
            for r in T.unroll(R):
                for c in T.vectorized(C):
                    acc[r, c] = acc[r, c] + X[m, indices[e] + c] * data[e, r, c]
        dots = T.alloc_buffer((R,), "float32", scope="global")
        for r in T.unroll(R):
            dots[r] = T.float32(0)
            for c in range(C):
                dots[r] = dots[r] + acc[r, c]
        for r in T.vectorized(R):
            Y[m, T.min(ib * R, N - R) + r] = epi(dots[r], bias, R_, m, T.min(ib * R, N - R) + r)

    return along_cols


def blocked(K: int, N: int, R: int, C: int, nnzb: int, vw: int, epi: EpilogueFn, mu: int = 2) -> Any:  # noqa: N803
    """BSR with X transposed per task, as csr's ``blocked``: each parallel task takes a tile of ``mu * vw`` rows of
    X (and a share of the block rows when M gives fewer than ``TASKS`` tiles), transposes only that tile (L1/L2)
    and runs its block rows against it; each XT vector loaded serves the R rows of a block. Tiles with fewer than
    ``CHAINS`` accumulators add partial sums (independent FMA chains). Below one tile, one shared transposed X."""
    from tvm.script import tirx as T

    nbr = -(-N // R)
    mt = vw * mu
    transpose = task_transpose_macro(K, vw, mt)
    transpose_all = blocked_transpose_macro(K, vw)

    def make_tile(U: int) -> Any:  # noqa: N803
        w = U * vw
        # Independent FMA chains: R*U accumulators per partial sum; fewer than CHAINS get CHAINS // (R*U) partial
        # sums, over a block's columns when it has several (c % P), else over consecutive blocks.
        P = max(1, min(CHAINS // (R * U), C if C > 1 else CHAINS))  # noqa: N806
        over_c = C > 1
        S = 1 if over_c else P  # noqa: N806

        @T.macro
        def step_over_c(acc, XT, data, indices, e, col):  # noqa: N803
            for c in T.unroll(C):
                for r in T.unroll(R):
                    for u in T.unroll(U):
                        for v in T.vectorized(vw):
                            acc[c % P, r, u, v] = (
                                acc[c % P, r, u, v] + data[e, r, c] * XT[indices[e] + c, col + u * vw + v]
                            )

        @T.macro
        def step_over_blocks(acc, XT, data, indices, e, col):  # noqa: N803
            for s in T.unroll(S):
                for c in T.unroll(C):
                    for r in T.unroll(R):
                        for u in T.unroll(U):
                            for v in T.vectorized(vw):
                                acc[s, r, u, v] = (
                                    acc[s, r, u, v] + data[e + s, r, c] * XT[indices[e + s] + c, col + u * vw + v]
                                )

        step = step_over_c if over_c else step_over_blocks

        @T.macro
        def tile(XT, Y, data, indices, indptr, bias, R_, M, ib, col, m0):  # noqa: N803
            acc = T.alloc_buffer((P, R, U, vw), "float32", scope="global")
            for p in T.unroll(P):
                for r in T.unroll(R):
                    for u in T.unroll(U):
                        for v in T.vectorized(vw):
                            acc[p, r, u, v] = T.float32(0)
            e0 = indptr[ib]
            cnt = indptr[ib + 1] - e0
            for ee in range(cnt // S):
                step(acc, XT, data, indices, e0 + ee * S, col)
            for ee in range(cnt % S):
                e = e0 + cnt // S * S + ee
                for c in T.unroll(C):
                    for r in T.unroll(R):
                        for u in T.unroll(U):
                            for v in T.vectorized(vw):
                                acc[0, r, u, v] = acc[0, r, u, v] + data[e, r, c] * XT[indices[e] + c, col + u * vw + v]
            out = T.alloc_buffer((R, w), "float32", scope="global")
            for r in T.unroll(R):
                for u in T.unroll(U):
                    for v in T.vectorized(vw):
                        out[r, u * vw + v] = acc[0, r, u, v]
            for p in range(1, P):
                for r in T.unroll(R):
                    for u in T.unroll(U):
                        for v in T.vectorized(vw):
                            out[r, u * vw + v] = out[r, u * vw + v] + acc[p, r, u, v]
            for mm in range(w):
                if m0 + mm < M:
                    for r in T.vectorized(R):
                        Y[m0 + mm, T.min(ib * R, N - R) + r] = epi(
                            out[r, mm], bias, R_, m0 + mm, T.min(ib * R, N - R) + r
                        )

        return tile

    one_vector, block_tile = make_tile(1), make_tile(mu)
    dot_block_row = _small_m_macro(N, R, C, epi)

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
        if M < SMALL_M:
            for ib in T.parallel(nbr):
                for t in range(M):
                    dot_block_row(X, Y, data, indices, indptr, bias, Res, ib, t)
        elif M < mt:  # less than one tile: one shared transposed X, one vector of rows of X at a time
            XTa = T.alloc_buffer((K, padded(M, vw)), "float32")
            transpose_all(X, XTa, M, padded(M, vw))
            for ib in T.parallel(nbr):
                for t in range(padded(M, vw) // vw):
                    one_vector(XTa, Y, data, indices, indptr, bias, Res, M, ib, t * vw, t * vw)
        else:
            blocks = (M + mt - 1) // mt
            parts = T.max(1, T.min(nbr, (TASKS + blocks - 1) // blocks))
            per = (nbr + parts - 1) // parts
            for task in T.parallel(blocks * parts):
                m_lo = task // parts * mt
                part = task % parts
                XT = T.alloc_buffer((K, mt), "float32", scope="global")
                transpose(X, XT, m_lo, T.min(M - m_lo, mt))
                for i in range(T.max(0, T.min(nbr - part * per, per))):
                    block_tile(XT, Y, data, indices, indptr, bias, Res, M, part * per + i, 0, m_lo)

    return kernel
