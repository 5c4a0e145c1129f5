"""BSR (R x C blocks) on the GPU: one thread block per block row, the activation tile in shared memory.

Block: ``mt`` rows of X x R rows of the block row, one thread per (m, r) pair (r fastest, so the R threads of one m
read one block's ``data`` with consecutive addresses). X[m0:m0+mt, ...] is staged in shared memory one chunk of
``kc`` inputs (+ C-1 halo columns for blocks that start near the chunk's end) at a time with coalesced loads; the
chunk row stride is padded to an odd number of words so the mt rows read by one warp fall in distinct banks. Every
thread walks the block row's block list once per chunk and multiplies the blocks starting inside the chunk (each
block is used exactly once). Rows of the shifted last block row (docs/internals.md) are written twice with the same
value. Grid: (ceil(M / mt), ceil(N / R)): M, known only at run time, on grid.x.
"""

from __future__ import annotations

from typing import Any

from ...tir import EpilogueFn

MAX_THREADS = 128
SMEM_FLOATS = 8192  # 32 KiB of shared memory per block for the staged chunk


def rows_per_block(R: int) -> int:  # noqa: N803
    """Rows of X per thread block: 128 threads when R divides into it, at least 1 row."""
    return max(1, min(32, MAX_THREADS // R))


def chunk(K: int, R: int, C: int) -> int:  # noqa: N803
    """Inputs per staged chunk (the chunk plus its halo and padding fit in SMEM_FLOATS)."""
    mt = rows_per_block(R)
    return max(1, min(K, SMEM_FLOATS // mt - C))


def row_words(K: int, R: int, C: int) -> int:  # noqa: N803
    """Row stride of the staged chunk in words: chunk + halo, rounded up to an odd count (no bank conflicts)."""
    w = chunk(K, R, C) + C - 1
    return w | 1


def smem_bytes(K: int, R: int, C: int) -> int:  # noqa: N803
    return rows_per_block(R) * row_words(K, R, C) * 4


def kernel(K: int, N: int, R: int, C: int, nnzb: int, epi: EpilogueFn) -> Any:  # noqa: N803
    """The BSR kernel with the full ABI argument list (common.finish trims it)."""
    from tvm.script import tirx as T

    mt = rows_per_block(R)
    kc = chunk(K, R, C)
    words = row_words(K, R, C)
    n_chunks = (K + kc - 1) // kc
    nbr = (N + R - 1) // R
    threads = mt * R
    stage_iters = (mt * (kc + C - 1) + threads - 1) // threads

    @T.prim_func
    def func(
        x: T.handle,
        data: T.Buffer((nnzb, R, C), "float32"),
        indices: T.Buffer((nnzb,), "int32"),
        indptr: T.Buffer((nbr + 1,), "int32"),
        bias: T.Buffer((N,), "float32"),
        r: T.handle,
        y: T.handle,
    ) -> None:
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        M = T.int64()
        X = T.match_buffer(x, (M, K), "float32")
        Res = T.match_buffer(r, (M, N), "float32")
        Y = T.match_buffer(y, (M, N), "float32")
        for mb in T.thread_binding((M + mt - 1) // mt, thread="blockIdx.x"):
            for ib in T.thread_binding(nbr, thread="blockIdx.y"):
                for t in T.thread_binding(threads, thread="threadIdx.x"):
                    xs = T.alloc_buffer((mt, words), "float32", scope="shared")
                    acc = T.alloc_buffer((1,), "float32", scope="local")
                    acc[0] = T.float32(0)
                    for c in range(n_chunks):
                        for it in range(stage_iters):
                            idx = it * threads + t
                            col = c * kc + idx % (kc + C - 1)
                            row = mb * mt + idx // (kc + C - 1)
                            if idx < mt * (kc + C - 1):
                                xs[idx // (kc + C - 1), idx % (kc + C - 1)] = T.if_then_else(
                                    row < M and col < K, X[T.min(row, M - 1), T.min(col, K - 1)], T.float32(0)
                                )
                        T.tvm_storage_sync("shared")
                        for e in range(indptr[ib], indptr[ib + 1]):
                            cs = indices[e]
                            if c * kc <= cs and cs < c * kc + kc:
                                for cc in T.unroll(C):
                                    acc[0] = acc[0] + data[e, t % R, cc] * xs[t // R, cs - c * kc + cc]
                        T.tvm_storage_sync("shared")
                    n = T.min(ib * R, N - R) + t % R
                    m = mb * mt + t // R
                    if m < M:
                        Y[m, n] = epi(acc[0], bias, Res, m, n)

    return func
