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


def transpose_vectors(rows: list[Any]) -> list[Any]:
    """The columns of the square matrix whose rows are the vector expressions ``rows`` (a power of two of them):
    log2(n) stages of two-source shuffles, each swapping the off-diagonal blocks of h lanes (h = n/2 .. 1) between
    row pairs i, i+h. LLVM turns each into one or two permutes (vshuff32x4 / vpermt2ps / unpck on AVX-512) and
    merges the repeated ones; 16x16 floats: 64 shuffles where a transpose through a stack block took 256 element
    moves (measured on 8 tiles of 32x384 on AMD Zen 4: 6.7 us against 15.4 us, the parallel loop included)."""
    from tvm import tirx

    n = len(rows)
    cur = list(rows)
    h = n // 2
    while h:
        lo = [tirx.const(n + j - h if j & h else j, "int32") for j in range(n)]
        hi = [tirx.const(n + j if j & h else j + h, "int32") for j in range(n)]
        nxt = list(cur)
        for i in (i for i in range(n) if not i & h):
            nxt[i] = tirx.Shuffle([cur[i], cur[i + h]], lo)
            nxt[i + h] = tirx.Shuffle([cur[i], cur[i + h]], hi)
        cur = nxt
        h //= 2
    return cur


def _register_block_macro(K: int, vw: int) -> Any:  # noqa: N803
    """``block(X, XT, row0, cnt, kb, ib)``: one vw x vw block through registers, XT[kb*vw + j, ib*vw + v] =
    X[row0 + min(ib*vw + v, cnt - 1), kb*vw + j], with the last block column shifted back to K-vw (K >= vw): vw
    vector loads of rows of X, ``transpose_vectors``, vw vector stores."""
    from tvm import tirx
    from tvm.script import tirx as T

    def store(X: Any, XT: Any, row0: Any, cnt: Any, kb: Any, ib: Any) -> None:  # noqa: N803
        k0 = tirx.min(kb * vw, K - vw)
        rows = [X[row0 + tirx.min(ib * vw + i, cnt - 1), tirx.Ramp(k0, 1, vw)] for i in range(vw)]
        for j, column in enumerate(transpose_vectors(rows)):
            T.buffer_store(XT, column, [k0 + j, tirx.Ramp(ib * vw, 1, vw)])  # emitted into the macro's body

    @T.macro
    def block(X, XT, row0, cnt, kb, ib):  # noqa: N803
        store(X, XT, row0, cnt, kb, ib)

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
