"""CSR template (``values`` f32[nnz], ``indices`` i32[nnz], ``indptr`` i32[N+1]).

Variants:
- ``xt``: X is transposed into a zero-padded workspace XT[K, Mp] so that one nonzero W[n, k] multiplies a
  contiguous vector XT[k, m0:m0+vw]; ``mu`` vectors per tile give independent FMA chains (latency hiding) and
  amortize the value/index loads. Parallel over output rows n.
- ``tiled``: one kernel, two paths chosen at run time by M. Small M (< ``SMALL_M``): no transpose, each output is a
  gather-dot over its row's nonzeros (X rows stay in L1). Larger M: the ``xt`` product on a register-blocked
  transpose, with output rows taken a vector at a time (row groups) so Y and the epilogue are written as vectors
  along n instead of one scalar per (m, n) at stride N.
- ``blocked`` (the default): cache-blocked. Each parallel task owns a tile of ``mu * vw`` rows of X, transposes only
  that tile into its own L1/L2-resident XT and runs every output row (of its share) against it, with ``SPLIT``
  partial sums per row (independent FMA chains). ``tiled`` transposed all of X first and then swept it once per
  row group: at M=1024, K=1536 that copy is 6 MiB, and the kernel ran at 0.6x of ORT dense; ``blocked`` at 2.7x.
"""

from __future__ import annotations

from typing import Any

from ...tir import EpilogueFn
from .common import (
    SMALL_M,
    TASKS,
    blocked_transpose_macro,
    group_rows,
    padded,
    task_transpose_macro,
    transpose_macro,
)

DOT_UNROLL = 4  # independent partial sums per gather-dot (hides the FMA latency)
SPLIT = 4  # default partial sums per output row in ``blocked`` (the target's table sets its own: variant.split)


def xt(K: int, N: int, nnz: int, vw: int, epi: EpilogueFn, mu: int = 4) -> Any:  # noqa: N803
    """The CSR kernel with the full ABI argument list (see common.finish)."""
    from tvm.script import tirx as T

    transpose_x = transpose_macro()
    mt = vw * mu

    @T.macro
    def tile(Y, XT, values, indices, indptr, bias, R, M, n, m0, U):  # noqa: N803
        acc = T.alloc_buffer((U, vw), "float32", scope="global")
        for u in T.unroll(U):
            for v in T.vectorized(vw):
                acc[u, v] = T.float32(0)
        for j in range(indptr[n], indptr[n + 1]):
            for u in T.unroll(U):
                for v in T.vectorized(vw):
                    acc[u, v] = acc[u, v] + values[j] * XT[indices[j], m0 + u * vw + v]
        out = T.alloc_buffer((U, vw), "float32", scope="global")
        for u in T.unroll(U):
            for v in T.vectorized(vw):
                out[u, v] = acc[u, v]
        for u in range(U):  # not unrolled: one vectorized copy of the epilogue (code size, compile time)
            for v in T.vectorized(vw):
                out[u, v] = epi(out[u, v], bias, R, T.min(m0 + u * vw + v, M - 1), n)
            for v in range(vw):
                if m0 + u * vw + v < M:
                    Y[m0 + u * vw + v, n] = out[u, v]

    @T.prim_func
    def kernel(
        x: T.handle,
        values: T.Buffer((nnz,), "float32"),
        indices: T.Buffer((nnz,), "int32"),
        indptr: T.Buffer((N + 1,), "int32"),
        bias: T.Buffer((N,), "float32"),
        r: T.handle,
        y: T.handle,
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        M = T.int64()
        X = T.match_buffer(x, (M, K), "float32")
        R = T.match_buffer(r, (M, N), "float32")
        Y = T.match_buffer(y, (M, N), "float32")
        XT = T.alloc_buffer((K, padded(M, vw)), "float32")
        transpose_x(X, XT, M, K, padded(M, vw))
        for n in T.parallel(N):
            for t in range(padded(M, vw) // mt):
                tile(Y, XT, values, indices, indptr, bias, R, M, n, t * mt, mu)
            for t in range(padded(M, vw) % mt // vw):
                tile(Y, XT, values, indices, indptr, bias, R, M, n, padded(M, vw) // mt * mt + t * vw, 1)

    return kernel


def _dot_rows_macro(rg: int, epi: EpilogueFn) -> Any:
    """``dot_rows(X, Y, values, indices, indptr, bias, R, m, n0)``: rows n0..n0+rg of Y[m] as gather-dots over
    their nonzeros, ``DOT_UNROLL`` partial sums each (small M: X's rows stay in L1, nothing is transposed)."""
    from tvm.script import tirx as T

    du = DOT_UNROLL

    @T.macro
    def dot_rows(X, Y, values, indices, indptr, bias, R, m, n0):  # noqa: N803
        dots = T.alloc_buffer((rg,), "float32", scope="global")
        for r in range(rg):
            s = T.alloc_buffer((du,), "float32", scope="global")
            for q in T.unroll(du):
                s[q] = T.float32(0)
            for j in range((indptr[n0 + r + 1] - indptr[n0 + r]) // du):
                for q in T.unroll(du):
                    s[q] = s[q] + values[indptr[n0 + r] + j * du + q] * X[m, indices[indptr[n0 + r] + j * du + q]]
            for j in range((indptr[n0 + r + 1] - indptr[n0 + r]) % du):
                s[0] = s[0] + values[indptr[n0 + r + 1] - 1 - j] * X[m, indices[indptr[n0 + r + 1] - 1 - j]]
            dots[r] = (s[0] + s[1]) + (s[2] + s[3])
        for r in T.vectorized(rg):
            Y[m, n0 + r] = epi(dots[r], bias, R, m, n0 + r)

    return dot_rows


def _group_tile_macro(rg: int, vw: int, epi: EpilogueFn) -> Any:
    """``tile(XT, Y, values, indices, indptr, bias, R, M, n0, m0, U)``: output rows n0..n0+rg for the U*vw rows of
    X from m0, against the transposed XT; Y is written as vectors along n."""
    from tvm.script import tirx as T

    @T.macro
    def tile(XT, Y, values, indices, indptr, bias, R, M, n0, m0, U):  # noqa: N803
        L = T.alloc_buffer((rg, U * vw), "float32", scope="global")
        for r in range(rg):
            acc = T.alloc_buffer((U, vw), "float32", scope="global")
            for u in T.unroll(U):
                for v in T.vectorized(vw):
                    acc[u, v] = T.float32(0)
            for j in range(indptr[n0 + r], indptr[n0 + r + 1]):
                for u in T.unroll(U):
                    for v in T.vectorized(vw):
                        acc[u, v] = acc[u, v] + values[j] * XT[indices[j], m0 + u * vw + v]
            for u in T.unroll(U):
                for v in T.vectorized(vw):
                    L[r, u * vw + v] = acc[u, v]
        for mm in range(U * vw):
            if m0 + mm < M:
                for r in T.vectorized(rg):
                    Y[m0 + mm, n0 + r] = epi(L[r, mm], bias, R, m0 + mm, n0 + r)

    return tile


def tiled(K: int, N: int, nnz: int, vw: int, epi: EpilogueFn, mu: int = 8) -> Any:  # noqa: N803
    """CSR with a run-time split on M: gather-dot rows for small M, transposed tiles otherwise."""
    from tvm.script import tirx as T

    transpose = blocked_transpose_macro(K, vw)
    rg = group_rows(N, vw)
    groups = -(-N // rg)
    mt = vw * mu
    dot_rows = _dot_rows_macro(rg, epi)

    tile = _group_tile_macro(rg, vw, epi)

    @T.prim_func
    def kernel(
        x: T.handle,
        values: T.Buffer((nnz,), "float32"),
        indices: T.Buffer((nnz,), "int32"),
        indptr: T.Buffer((N + 1,), "int32"),
        bias: T.Buffer((N,), "float32"),
        r: T.handle,
        y: T.handle,
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        M = T.int64()
        X = T.match_buffer(x, (M, K), "float32")
        R = T.match_buffer(r, (M, N), "float32")
        Y = T.match_buffer(y, (M, N), "float32")
        if M < SMALL_M:
            for g in T.parallel(groups):
                for m in range(M):
                    dot_rows(X, Y, values, indices, indptr, bias, R, m, T.min(g * rg, N - rg))
        else:
            XT = T.alloc_buffer((K, padded(M, vw)), "float32")
            transpose(X, XT, M, padded(M, vw))
            for g in T.parallel(groups):
                for t in range(padded(M, vw) // mt):
                    tile(XT, Y, values, indices, indptr, bias, R, M, T.min(g * rg, N - rg), t * mt, mu)
                for t in range(padded(M, vw) % mt // vw):
                    tile(
                        XT,
                        Y,
                        values,
                        indices,
                        indptr,
                        bias,
                        R,
                        M,
                        T.min(g * rg, N - rg),
                        padded(M, vw) // mt * mt + t * vw,
                        1,
                    )

    return kernel


def _split_tile_macro(rg: int, vw: int, mu: int, split: int, epi: EpilogueFn) -> Any:
    """``tile(XT, Y, values, indices, indptr, bias, R, M, n0, col, m0)``: output rows n0..n0+rg for the mu*vw rows
    of X from m0, which are XT's columns from ``col``; ``split`` partial sums per output row (independent FMA
    chains); Y is written as vectors along n."""
    from tvm.script import tirx as T

    S = split  # noqa: N806
    mt = mu * vw

    @T.macro
    def tile(XT, Y, values, indices, indptr, bias, R, M, n0, col, m0):  # noqa: N803
        L = T.alloc_buffer((rg, mt), "float32", scope="global")
        for r in range(rg):
            acc = T.alloc_buffer((S, mu, vw), "float32", scope="global")
            for s in T.unroll(S):
                for u in T.unroll(mu):
                    for v in T.vectorized(vw):
                        acc[s, u, v] = T.float32(0)
            j0 = indptr[n0 + r]
            cnt = indptr[n0 + r + 1] - j0
            for jj in range(cnt // S):
                for s in T.unroll(S):
                    for u in T.unroll(mu):
                        for v in T.vectorized(vw):
                            acc[s, u, v] = (
                                acc[s, u, v] + values[j0 + jj * S + s] * XT[indices[j0 + jj * S + s], col + u * vw + v]
                            )
            for jj in range(cnt % S):
                for u in T.unroll(mu):
                    for v in T.vectorized(vw):
                        acc[0, u, v] = (
                            acc[0, u, v]
                            + values[j0 + cnt // S * S + jj] * XT[indices[j0 + cnt // S * S + jj], col + u * vw + v]
                        )
            for u in T.unroll(mu):
                for v in T.vectorized(vw):
                    L[r, u * vw + v] = acc[0, u, v]
            for s in T.unroll(1, S):
                for u in T.unroll(mu):
                    for v in T.vectorized(vw):
                        L[r, u * vw + v] = L[r, u * vw + v] + acc[s, u, v]
        for mm in range(mt):
            if m0 + mm < M:
                for r in T.vectorized(rg):
                    Y[m0 + mm, n0 + r] = epi(L[r, mm], bias, R, m0 + mm, n0 + r)

    return tile


def blocked(K: int, N: int, nnz: int, vw: int, epi: EpilogueFn, mu: int = 2, split: int = SPLIT) -> Any:  # noqa: N803
    """CSR, cache-blocked. From one tile of ``mu * vw`` rows of X up, each parallel task takes such a tile (and,
    when M alone gives fewer than ``TASKS`` tiles, a share of the output rows), transposes only that tile into its
    own XT (``K x mu*vw``, in L1/L2) and computes every output row of its share against it, ``split`` partial sums
    per row so that the FMA chains do not wait on each other: nothing sweeps all of X per output row, and no
    transposed copy of all of X is made. Below one tile it runs ``tiled``'s paths (gather-dots for M < SMALL_M,
    else one shared transposed X, one vector of rows of X at a time)."""
    from tvm.script import tirx as T

    rg = group_rows(N, vw)
    groups = -(-N // rg)
    mt = vw * mu
    transpose = task_transpose_macro(K, vw, mt)
    transpose_all = blocked_transpose_macro(K, vw)
    dot_rows = _dot_rows_macro(rg, epi)
    one_vector = _split_tile_macro(rg, vw, 1, split, epi)
    rows_tile = _split_tile_macro(rg, vw, mu, split, epi)

    @T.prim_func
    def kernel(
        x: T.handle,
        values: T.Buffer((nnz,), "float32"),
        indices: T.Buffer((nnz,), "int32"),
        indptr: T.Buffer((N + 1,), "int32"),
        bias: T.Buffer((N,), "float32"),
        r: T.handle,
        y: T.handle,
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        M = T.int64()
        X = T.match_buffer(x, (M, K), "float32")
        R = T.match_buffer(r, (M, N), "float32")
        Y = T.match_buffer(y, (M, N), "float32")
        if M < SMALL_M:
            for g in T.parallel(groups):
                for m in range(M):
                    dot_rows(X, Y, values, indices, indptr, bias, R, m, T.min(g * rg, N - rg))
        elif M < mt:  # less than one token tile: one shared transposed X, vectors of vw rows of X
            XT = T.alloc_buffer((K, padded(M, vw)), "float32")
            transpose_all(X, XT, M, padded(M, vw))
            for g in T.parallel(groups):
                for t in range(padded(M, vw) // vw):
                    one_vector(XT, Y, values, indices, indptr, bias, R, M, T.min(g * rg, N - rg), t * vw, t * vw)
        else:
            blocks = (M + mt - 1) // mt
            parts = T.max(1, T.min(groups, (TASKS + blocks - 1) // blocks))
            per = (groups + parts - 1) // parts
            for task in T.parallel(blocks * parts):
                m_lo = task // parts * mt
                part = task % parts
                XT = T.alloc_buffer((K, mt), "float32", scope="global")
                transpose(X, XT, m_lo, T.min(M - m_lo, mt))
                # a loop from 0 (TVM 0.27 mis-indexes a serial loop whose start is a run-time value)
                for i in range(T.max(0, T.min(groups - part * per, per))):
                    n0 = T.min((part * per + i) * rg, N - rg)
                    rows_tile(XT, Y, values, indices, indptr, bias, R, M, n0, 0, m_lo)

    return kernel
