"""CSR template (``values`` f32[nnz], ``indices`` i32[nnz], ``indptr`` i32[N+1]).

Variant ``xt``: X is transposed into a zero-padded workspace XT[K, Mp] so that one nonzero W[n, k] multiplies a
contiguous vector XT[k, m0:m0+vw]; ``mu`` vectors per tile give independent FMA chains (latency hiding) and amortize
the value/index loads. Parallel over output rows n.
"""

from __future__ import annotations

from typing import Any

from ..epilogue import Epilogue
from .common import padded, transpose_macro


def xt(K: int, N: int, nnz: int, vw: int, epi: Epilogue, mu: int = 4) -> Any:  # noqa: N803
    """The CSR kernel with the full ABI argument list (see common.finish)."""
    from tvm.script import tirx as T

    transpose_x = transpose_macro()
    mt = vw * mu

    @T.macro
    def tile(Y, XT, values, indices, indptr, bias, R, M, n, m0, U):  # noqa: N803
        acc = T.alloc_buffer((U, vw), "float32", scope="local")
        for u in T.unroll(U):
            for v in T.vectorized(vw):
                acc[u, v] = T.float32(0)
        for j in range(indptr[n], indptr[n + 1]):
            for u in T.unroll(U):
                for v in T.vectorized(vw):
                    acc[u, v] = acc[u, v] + values[j] * XT[indices[j], m0 + u * vw + v]
        out = T.alloc_buffer((U, vw), "float32", scope="local")
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
