"""Pieces shared by the templates: the padded X transpose and row grouping (``targets/tir.finish`` trims the
optional epilogue arguments).

Per-tile scratch buffers use scope "global", not "local": TVM 0.27's LowerTVMBuiltin keeps only global-scope
allocations of constant size < 1 KiB on the stack (where LLVM turns them into registers); every other allocation,
including "local" ones and scalars assigned inside a macro, becomes a TVMBackendAllocWorkspace/FreeWorkspace pair
inside the parallel loop. Measured on aarch64 (qemu instruction counts, csr, M=1, 384x1536): ~470 instructions per
output row before, none after. Allocations inside a T.parallel body stay private to each task.
"""

from __future__ import annotations

from typing import Any

XT_BLOCK = 8  # columns of X copied per inner step of the transpose (one contiguous read of a row of X)


def padded(m: Any, vw: int) -> Any:
    """M rounded up to the vector width (the row count of the transposed workspace)."""
    return (m + vw - 1) // vw * vw


def transpose_macro() -> Any:
    """``transpose_x(X, XT, M, K, Mp)``: XT[k, m] = X[m, k], zero for the padding rows M <= m < Mp."""
    from tvm.script import tirx as T

    @T.macro
    def transpose_x(X, XT, M, K, Mp):  # noqa: N803 (buffer names follow the ABI)
        for kb in T.parallel((K + XT_BLOCK - 1) // XT_BLOCK):
            for m in range(Mp):
                for kk in T.unroll(XT_BLOCK):
                    if kb * XT_BLOCK + kk < K:
                        XT[kb * XT_BLOCK + kk, m] = T.if_then_else(
                            m < M, X[T.min(m, M - 1), kb * XT_BLOCK + kk], T.float32(0)
                        )

    return transpose_x


def group_rows(n_out: int, vw: int) -> int:
    """Output rows per row group: a vector of outputs (fewer when the layer itself is narrower)."""
    return min(vw, n_out)


def blocked_transpose_macro(K: int, vw: int) -> Any:  # noqa: N803
    """``transpose_blocks(X, XT, M, Mp)``: XT[k, m] = X[m, k] for m < M, vw x vw blocks held in registers.

    Padding rows M <= m < Mp hold copies of row M-1 (their outputs are never stored, so no zero fill). The last
    block column is shifted back to K-vw (rewrites identical values) so every block is a full vector; K < vw falls
    back to the scalar copy.
    """
    from tvm.script import tirx as T

    if K < vw:
        scalar = transpose_macro()

        @T.macro
        def transpose_small(X, XT, M, Mp):  # noqa: N803
            scalar(X, XT, M, K, Mp)

        return transpose_small

    block = _register_block_macro(K, vw)

    @T.macro
    def transpose_blocks(X, XT, M, Mp):  # noqa: N803
        for kb in T.parallel((K + vw - 1) // vw):
            for mb in range(Mp // vw):
                block(X, XT, 0, M, kb, mb)

    return transpose_blocks


def _register_block_macro(K: int, vw: int) -> Any:  # noqa: N803
    """``block(X, XT, row0, cnt, kb, ib)``: one vw x vw block through registers, XT[kb*vw + j, ib*vw + v] =
    X[row0 + min(ib*vw + v, cnt - 1), kb*vw + j], with the last block column shifted back to K-vw (K >= vw)."""
    from tvm.script import tirx as T

    @T.macro
    def block(X, XT, row0, cnt, kb, ib):  # noqa: N803
        blk = T.alloc_buffer((vw, vw), "float32", scope="global")
        for i in T.unroll(vw):
            for v in T.vectorized(vw):
                blk[i, v] = X[row0 + T.min(ib * vw + i, cnt - 1), T.min(kb * vw, K - vw) + v]
        for j in T.unroll(vw):
            for v in T.vectorized(vw):
                XT[T.min(kb * vw, K - vw) + j, ib * vw + v] = blk[v, j]

    return block


SMALL_M = 4  # below this many rows of X a gather-dot per output row beats transposing into vw-padded columns
TASKS = 8  # parallel tasks a blocked kernel makes when its token blocks alone give fewer (2..8 cores busy)


def task_transpose_macro(K: int, vw: int, mb: int) -> Any:  # noqa: N803
    """``transpose_block(X, XT, m_lo, cnt)``: XT[k, i] = X[m_lo + min(i, cnt - 1), k] for i < ``mb``, a multiple
    of ``vw`` (rows past ``cnt`` repeat the last one; their outputs are never stored).

    One task's own token block, so XT (K x mb) stays in the core's L2 instead of a transposed copy of all of X
    (at M=1024, K=1536 that copy is 6 MiB and left the cache before it was read). vw x vw blocks held in
    registers; the last block column is shifted back to K-vw (rewrites identical values); K < vw copies scalars.
    """
    from tvm.script import tirx as T

    if K < vw:

        @T.macro
        def transpose_small(X, XT, m_lo, cnt):  # noqa: N803
            for i in range(mb):
                for k in range(K):
                    XT[k, i] = X[m_lo + T.min(i, cnt - 1), k]

        return transpose_small

    block = _register_block_macro(K, vw)

    @T.macro
    def transpose_block(X, XT, m_lo, cnt):  # noqa: N803
        for kb in range((K + vw - 1) // vw):
            for ib in range(mb // vw):
                block(X, XT, m_lo, cnt, kb, ib)

    return transpose_block
