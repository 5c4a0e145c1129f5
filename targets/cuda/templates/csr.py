"""CSR on the GPU: one warp per output row, the warp's lanes split the row's nonzeros.

Block: 4 warps = 4 consecutive output rows n, ``mt`` rows of X (m). The block first stages X[m0:m0+mt, :] in shared
memory with coalesced loads (consecutive threads read consecutive k); each lane then walks the row's nonzeros with
stride 32, so the loads of ``values``/``indices`` are coalesced (one 128-byte line per 32 nonzeros), and gathers
X from shared memory for all ``mt`` rows (each value/index loaded once, used mt times). A butterfly of warp shuffles
sums the 32 partial sums; lane 0 applies the epilogue and stores. When a row of X does not fit in shared memory
(K > ``MAX_STAGED_K``) the lanes gather from global memory instead (L1/L2 cached).
Grid: (ceil(M / mt), ceil(N / 4)): M, known only at run time, on grid.x (up to 2^31 - 1 blocks).
"""

from __future__ import annotations

from typing import Any

from ...tir import EpilogueFn

WARPS = 4
SMEM_FLOATS = 12288  # 48 KiB of float32: the static shared-memory limit per block
MAX_STAGED_K = SMEM_FLOATS  # one row of X must fit
MAX_MT = 8  # rows of X per block: partial sums held per lane


def rows_per_block(K: int) -> int:  # noqa: N803
    """Rows of X per block (mt): as many as fit in shared memory, at most MAX_MT."""
    return max(1, min(MAX_MT, SMEM_FLOATS // K)) if K <= MAX_STAGED_K else MAX_MT


def smem_bytes(K: int) -> int:  # noqa: N803
    return rows_per_block(K) * K * 4 if K <= MAX_STAGED_K else 0


def kernel(K: int, N: int, nnz: int, epi: EpilogueFn) -> Any:  # noqa: N803
    """The CSR kernel with the full ABI argument list (common.finish trims it)."""
    from tvm.script import tirx as T

    mt = rows_per_block(K)
    staged = K <= MAX_STAGED_K
    full = T.uint32(0xFFFFFFFF)
    threads = WARPS * 32

    @T.prim_func
    def func(
        x: T.handle,
        values: T.Buffer((nnz,), "float32"),
        indices: T.Buffer((nnz,), "int32"),
        indptr: T.Buffer((N + 1,), "int32"),
        bias: T.Buffer((N,), "float32"),
        r: T.handle,
        y: T.handle,
    ) -> None:
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        M = T.int64()
        X = T.match_buffer(x, (M, K), "float32")
        R = T.match_buffer(r, (M, N), "float32")
        Y = T.match_buffer(y, (M, N), "float32")
        for mb in T.thread_binding((M + mt - 1) // mt, thread="blockIdx.x"):
            for nb in T.thread_binding((N + WARPS - 1) // WARPS, thread="blockIdx.y"):
                for w in T.thread_binding(WARPS, thread="threadIdx.y"):
                    for lane in T.thread_binding(32, thread="threadIdx.x"):
                        xs = T.alloc_buffer((mt, K if staged else 1), "float32", scope="shared")
                        acc = T.alloc_buffer((mt,), "float32", scope="local")
                        if staged:
                            for it in range((mt * K + threads - 1) // threads):
                                idx = it * threads + w * 32 + lane
                                row = mb * mt + idx // K
                                if idx < mt * K:
                                    xs[idx // K, idx % K] = T.if_then_else(
                                        row < M, X[T.min(row, M - 1), idx % K], T.float32(0)
                                    )
                            T.tvm_storage_sync("shared")
                        n = T.min(nb * WARPS + w, N - 1)  # a clamped duplicate row for the last block, not stored
                        for i in T.unroll(mt):
                            acc[i] = T.float32(0)
                        start = indptr[n]
                        for jj in range((indptr[n + 1] - start + 31) // 32):
                            j = start + jj * 32 + lane
                            if j < indptr[n + 1]:
                                v = values[j]
                                col = indices[j]
                                for i in T.unroll(mt):
                                    if staged:
                                        acc[i] = acc[i] + v * xs[i, col]
                                    else:
                                        acc[i] = acc[i] + v * X[T.min(mb * mt + i, M - 1), col]
                        for i in T.unroll(mt):
                            for sh in T.unroll(5):
                                acc[i] = acc[i] + T.tvm_warp_shuffle_xor(full, acc[i], 16 >> sh, 32, 32)
                        if lane == 0 and nb * WARPS + w < N:
                            for i in T.unroll(mt):
                                if mb * mt + i < M:
                                    Y[mb * mt + i, n] = epi(acc[i], bias, R, mb * mt + i, n)

    return func
