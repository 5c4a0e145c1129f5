"""CSR template (``values`` f32[nnz], ``indices`` i32[nnz], ``indptr`` i32[N+1]).

Variants:
- ``xt``: X is transposed into a zero-padded workspace XT[K, Mp] so that one nonzero W[n, k] multiplies a
  contiguous vector XT[k, m0:m0+vw]; ``mu`` vectors per tile give independent FMA chains (latency hiding) and
  amortize the value/index loads. Parallel over output rows n.
- ``tiled``: one kernel, two paths chosen at run time by M. Small M (< ``SMALL_M``): no transpose, each output is a
  gather-dot over its row's nonzeros (X rows stay in L1). Larger M: the ``xt`` product on a register-blocked
  transpose, with output rows taken a vector at a time (row groups) so Y and the epilogue are written as vectors
  along n instead of one scalar per (m, n) at stride N.
"""

from __future__ import annotations

from typing import Any

from ...tir import EpilogueFn
from .common import blocked_transpose_macro, group_rows, padded, transpose_macro

SMALL_M = 4  # below this many rows of X the gather-dot path beats transposing into vw-padded columns
DOT_UNROLL = 4  # independent partial sums per gather-dot (hides the FMA latency)


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


def tiled(K: int, N: int, nnz: int, vw: int, epi: EpilogueFn, mu: int = 8) -> Any:  # noqa: N803
    """CSR with a run-time split on M: gather-dot rows for small M, transposed tiles otherwise."""
    from tvm.script import tirx as T

    transpose = blocked_transpose_macro(K, vw)
    rg = group_rows(N, vw)
    groups = -(-N // rg)
    mt = vw * mu
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
