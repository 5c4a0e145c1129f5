"""N:M template (``values`` f32[N, G*n], ``positions`` u8[N, G*n], G = ceil(K/m); docs/internals.md).

Variant ``xt``: like CSR's, but the structure is static: every output row has exactly G*n slots, slot (g, t) reads
column g*m + positions[row, g*n + t]. Unused slots carry value 0 and an in-range position, so no bound checks.
"""

from __future__ import annotations

from typing import Any

from ..epilogue import Epilogue
from .common import padded, transpose_macro


def xt(K: int, N: int, n: int, m: int, vw: int, epi: Epilogue, mu: int = 4) -> Any:  # noqa: N803
    """The N:M kernel with the full ABI argument list (see common.finish)."""
    from tvm.script import tirx as T

    transpose_x = transpose_macro()
    groups = -(-K // m)
    slots = groups * n
    mt = vw * mu

    @T.macro
    def tile(Y, XT, values, positions, bias, R, M, row, m0, U):  # noqa: N803
        acc = T.alloc_buffer((U, vw), "float32", scope="local")
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
        out = T.alloc_buffer((U, vw), "float32", scope="local")
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
