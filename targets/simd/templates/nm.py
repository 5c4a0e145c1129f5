"""N:M template (``values`` f32[N, G*n], ``positions`` u8[N, G*n], G = ceil(K/m); docs/internals.md).

Variant ``xt``: like CSR's, but the structure is static: every output row has exactly G*n slots, slot (g, t) reads
column g*m + positions[row, g*n + t]. Unused slots carry value 0 and an in-range position, so no bound checks.

Variant ``tiled``: a run-time split on M. Small M: gather-dot per output row (no transpose). Larger M: transposed
X as in ``xt``, but a vector of output rows at a time walks K in chunks of ``CHUNK_GROUPS`` groups: the chunk's XT
rows (and the row group's accumulators) stay in L1 while all rows of the group use them, instead of every output row
streaming the whole of XT from L2. Y is then written as vectors along n.

Variant ``blocked``: cache-blocked as csr's (a tile of X transposed per task, ``SPLIT`` partial sums); it beats
``tiled`` only at large M (measured: M=1024, 384x1536 2:4: 1.04x vs 0.67x of ORT dense), so ``tiled`` stays first.
"""

from __future__ import annotations

from typing import Any

from ...tir import EpilogueFn
from .common import SMALL_M, TASKS, blocked_transpose_macro, group_rows, padded, task_transpose_macro, transpose_macro

CHUNK_GROUPS = 8  # groups of m inputs per K chunk: 8*4 XT rows of 128 columns = 16 KiB, half of L1


def xt(K: int, N: int, n: int, m: int, vw: int, epi: EpilogueFn, mu: int = 4) -> Any:  # noqa: N803
    """The N:M kernel with the full ABI argument list (see common.finish)."""
    from tvm.script import tirx as T

    transpose_x = transpose_macro()
    groups = -(-K // m)
    slots = groups * n
    mt = vw * mu

    @T.macro
    def tile(Y, XT, values, positions, bias, R, M, row, m0, U):  # noqa: N803
        acc = T.alloc_buffer((U, vw), "float32", scope="global")
        for u in T.unroll(U):
            for v in T.vectorized(vw):
                acc[u, v] = T.float32(0)
        for g in range(groups):
            for t in T.unroll(n):
                for u in T.unroll(U):
                    for v in T.vectorized(vw):
                        acc[u, v] = (
                            acc[u, v]
                            + values[row, g * n + t]
                            * XT[g * m + T.Cast("int32", positions[row, g * n + t]), m0 + u * vw + v]
                        )
        out = T.alloc_buffer((U, vw), "float32", scope="global")
        for u in T.unroll(U):
            for v in T.vectorized(vw):
                out[u, v] = acc[u, v]
        for u in range(U):  # not unrolled: one vectorized copy of the epilogue (code size, compile time)
            for v in T.vectorized(vw):
                out[u, v] = epi(out[u, v], bias, R, T.min(m0 + u * vw + v, M - 1), row)
            for v in range(vw):
                if m0 + u * vw + v < M:
                    Y[m0 + u * vw + v, row] = out[u, v]

    @T.prim_func
    def kernel(
        x: T.handle,
        values: T.Buffer((N, slots), "float32"),
        positions: T.Buffer((N, slots), "uint8"),
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
        for row in T.parallel(N):
            for t in range(padded(M, vw) // mt):
                tile(Y, XT, values, positions, bias, R, M, row, t * mt, mu)
            for t in range(padded(M, vw) % mt // vw):
                tile(Y, XT, values, positions, bias, R, M, row, padded(M, vw) // mt * mt + t * vw, 1)

    return kernel


def _dot_rows_macro(n: int, m: int, groups: int, rg: int, epi: EpilogueFn) -> Any:
    """``dot_rows(X, Y, values, positions, bias, R, row0, mrow)``: rows row0..row0+rg of Y[mrow] as gather-dots
    over their slots (small M: nothing is transposed)."""
    from tvm.script import tirx as T

    @T.macro
    def dot_rows(X, Y, values, positions, bias, R, row0, mrow):  # noqa: N803
        # Scalar: an AVX-512 vgatherdps over 16 slots measured slower here (0.077 vs 0.073 ms, 768x768 M=1).
        dots = T.alloc_buffer((rg,), "float32", scope="global")
        for r in range(rg):
            s = T.alloc_buffer((n,), "float32", scope="global")
            for t in T.unroll(n):
                s[t] = T.float32(0)
            for g in range(groups):
                for t in T.unroll(n):
                    s[t] = (
                        s[t]
                        + values[row0 + r, g * n + t] * X[mrow, g * m + T.Cast("int32", positions[row0 + r, g * n + t])]
                    )
            dots[r] = T.float32(0)
            for t in range(n):
                dots[r] = dots[r] + s[t]
        for r in T.vectorized(rg):
            Y[mrow, row0 + r] = epi(dots[r], bias, R, mrow, row0 + r)

    return dot_rows


def tiled(K: int, N: int, n: int, m: int, vw: int, epi: EpilogueFn, mu: int = 8) -> Any:  # noqa: N803
    """N:M with a run-time split on M: gather-dot rows for small M, L1-chunked transposed tiles otherwise."""
    from tvm.script import tirx as T

    transpose = blocked_transpose_macro(K, vw)
    groups = -(-K // m)
    slots = groups * n
    rg = group_rows(N, vw)
    ngroups = -(-N // rg)
    mt = vw * mu
    gc = min(CHUNK_GROUPS, groups)

    dot_rows = _dot_rows_macro(n, m, groups, rg, epi)

    @T.macro
    def chunk(XT, L, values, positions, row0, m0, g0, G, U):  # noqa: N803
        for r in range(rg):
            acc = T.alloc_buffer((U, vw), "float32", scope="global")
            for u in T.unroll(U):
                for v in T.vectorized(vw):
                    acc[u, v] = L[r, u * vw + v]
            for g in range(G):
                for t in T.unroll(n):
                    for u in T.unroll(U):
                        for v in T.vectorized(vw):
                            acc[u, v] = (
                                acc[u, v]
                                + values[row0 + r, (g0 + g) * n + t]
                                * XT[
                                    (g0 + g) * m + T.Cast("int32", positions[row0 + r, (g0 + g) * n + t]),
                                    m0 + u * vw + v,
                                ]
                            )
            for u in T.unroll(U):
                for v in T.vectorized(vw):
                    L[r, u * vw + v] = acc[u, v]

    @T.macro
    def tile(XT, Y, values, positions, bias, R, M, row0, m0, U):  # noqa: N803
        L = T.alloc_buffer((rg, U * vw), "float32", scope="global")
        for r in range(rg):
            for v in T.vectorized(U * vw):
                L[r, v] = T.float32(0)
        for c in range(groups // gc):
            chunk(XT, L, values, positions, row0, m0, c * gc, gc, U)
        if groups % gc > 0:
            chunk(XT, L, values, positions, row0, m0, groups // gc * gc, groups % gc, U)
        for mm in range(U * vw):
            if m0 + mm < M:
                for r in T.vectorized(rg):
                    Y[m0 + mm, row0 + r] = epi(L[r, mm], bias, R, m0 + mm, row0 + r)

    @T.prim_func
    def kernel(
        x: T.handle,
        values: T.Buffer((N, slots), "float32"),
        positions: T.Buffer((N, slots), "uint8"),
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
            for q in T.parallel(ngroups):
                for mrow in range(M):
                    dot_rows(X, Y, values, positions, bias, R, T.min(q * rg, N - rg), mrow)
        else:
            XT = T.alloc_buffer((K, padded(M, vw)), "float32")
            transpose(X, XT, M, padded(M, vw))
            for q in T.parallel(ngroups):
                for t in range(padded(M, vw) // mt):
                    tile(XT, Y, values, positions, bias, R, M, T.min(q * rg, N - rg), t * mt, mu)
                for t in range(padded(M, vw) % mt // vw):
                    tile(
                        XT,
                        Y,
                        values,
                        positions,
                        bias,
                        R,
                        M,
                        T.min(q * rg, N - rg),
                        padded(M, vw) // mt * mt + t * vw,
                        1,
                    )

    return kernel


SPLIT = 4  # default partial sums per output row in ``blocked`` (the target's table sets its own: variant.split)


def blocked(K: int, N: int, n: int, m: int, vw: int, epi: EpilogueFn, mu: int = 2, split: int = SPLIT) -> Any:  # noqa: N803
    """N:M, cache-blocked as csr's ``blocked``: from one tile of ``mu * vw`` rows of X up, each parallel task
    transposes only its tile (and takes a share of the output rows when M gives fewer than ``TASKS`` tiles) and
    walks every row's slots against it with ``split`` partial sums; below a tile, ``tiled``'s paths."""
    from tvm.script import tirx as T

    groups = -(-K // m)
    slots = groups * n
    rg = group_rows(N, vw)
    ngroups = -(-N // rg)
    mt = vw * mu
    S = split  # noqa: N806
    transpose = task_transpose_macro(K, vw, mt)
    transpose_all = blocked_transpose_macro(K, vw)
    dot_rows = _dot_rows_macro(n, m, groups, rg, epi)

    def make_tile(U: int) -> Any:  # noqa: N803
        w = U * vw

        @T.macro
        def tile(XT, Y, values, positions, bias, R, M, row0, col, m0):  # noqa: N803
            L = T.alloc_buffer((rg, w), "float32", scope="global")
            for r in range(rg):
                acc = T.alloc_buffer((S, U, vw), "float32", scope="global")
                for s in T.unroll(S):
                    for u in T.unroll(U):
                        for v in T.vectorized(vw):
                            acc[s, u, v] = T.float32(0)
                for jj in range(slots // S):
                    for s in T.unroll(S):
                        for u in T.unroll(U):
                            for v in T.vectorized(vw):
                                acc[s, u, v] = (
                                    acc[s, u, v]
                                    + values[row0 + r, jj * S + s]
                                    * XT[
                                        (jj * S + s) // n * m + T.Cast("int32", positions[row0 + r, jj * S + s]),
                                        col + u * vw + v,
                                    ]
                                )
                for jj in range(slots % S):
                    for u in T.unroll(U):
                        for v in T.vectorized(vw):
                            acc[0, u, v] = (
                                acc[0, u, v]
                                + values[row0 + r, slots // S * S + jj]
                                * XT[
                                    (slots // S * S + jj) // n * m
                                    + T.Cast("int32", positions[row0 + r, slots // S * S + jj]),
                                    col + u * vw + v,
                                ]
                            )
                for u in T.unroll(U):
                    for v in T.vectorized(vw):
                        L[r, u * vw + v] = acc[0, u, v]
                for s in T.unroll(1, S):
                    for u in T.unroll(U):
                        for v in T.vectorized(vw):
                            L[r, u * vw + v] = L[r, u * vw + v] + acc[s, u, v]
            for mm in range(w):
                if m0 + mm < M:
                    for r in T.vectorized(rg):
                        Y[m0 + mm, row0 + r] = epi(L[r, mm], bias, R, m0 + mm, row0 + r)

        return tile

    one_vector, rows_tile = make_tile(1), make_tile(mu)

    @T.prim_func
    def kernel(
        x: T.handle,
        values: T.Buffer((N, slots), "float32"),
        positions: T.Buffer((N, slots), "uint8"),
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
            for q in T.parallel(ngroups):
                for mrow in range(M):
                    dot_rows(X, Y, values, positions, bias, R, T.min(q * rg, N - rg), mrow)
        elif M < mt:  # less than one tile: one shared transposed X, one vector of rows of X at a time
            XT = T.alloc_buffer((K, padded(M, vw)), "float32")
            transpose_all(X, XT, M, padded(M, vw))
            for q in T.parallel(ngroups):
                for t in range(padded(M, vw) // vw):
                    one_vector(XT, Y, values, positions, bias, R, M, T.min(q * rg, N - rg), t * vw, t * vw)
        else:
            blocks = (M + mt - 1) // mt
            parts = T.max(1, T.min(ngroups, (TASKS + blocks - 1) // blocks))
            per = (ngroups + parts - 1) // parts
            for task in T.parallel(blocks * parts):
                m_lo = task // parts * mt
                part = task % parts
                XTt = T.alloc_buffer((K, mt), "float32", scope="global")
                transpose(X, XTt, m_lo, T.min(M - m_lo, mt))
                # a loop from 0 (TVM 0.27 mis-indexes a serial loop whose start is a run-time value)
                for i in range(T.max(0, T.min(ngroups - part * per, per))):
                    rows_tile(XTt, Y, values, positions, bias, R, M, T.min((part * per + i) * rg, N - rg), 0, m_lo)

    return kernel
