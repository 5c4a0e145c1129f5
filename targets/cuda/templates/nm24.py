"""nm:2:4 on sparse tensor cores: ``mma.sp`` m16n8k16, fp16 or bf16 inputs, fp32 accumulation (lossy: the inputs
are rounded to 16 bits).

Block: 4 warps; each warp owns 16 output rows (n) x ``M_TILE`` = 32 rows of X (m), i.e. 4 mma tiles sharing one
A fragment per k16 step. The block's 32 rows of X are staged chunk by chunk (``K_CHUNK`` inputs) in shared memory,
converted once to 16-bit pairs (one uint32 per two k), with coalesced 8-byte loads; the row stride is padded by
4 words so the B-fragment reads of a warp hit 32 distinct banks. A fragments and metadata are built from the packed
``values``/``positions`` arrays as described in ``mma_layout`` (re-encoded per group, no host-side repacking).
Grid: (ceil(M / 32), ceil(N / 64)); M is a runtime shape (on grid.x, up to 2^31 - 1 blocks), every load and
store is guarded.
"""

from __future__ import annotations

from typing import Any

from ...tir import EpilogueFn
from .. import mma_layout as L

WARPS = 4
ROWS_PER_WARP = 16
N_TILE = WARPS * ROWS_PER_WARP  # output rows per block
MMA_M = 8  # rows of X per mma tile
M_TILES = 4  # mma tiles per warp along m
M_TILE = MMA_M * M_TILES  # rows of X per block
K_CHUNK = 256  # inputs staged in shared memory per chunk (a multiple of 16)
PAD_WORDS = 4  # row padding: a stride of 4 x odd words makes the B-fragment reads bank-conflict free


def chunk(K: int) -> int:  # noqa: N803
    """Inputs staged per chunk: K rounded up to 16, at most K_CHUNK."""
    return min(K_CHUNK, (K + 15) // 16 * 16)


def smem_bytes(K: int) -> int:  # noqa: N803
    return M_TILE * (chunk(K) // 2 + PAD_WORDS) * 4


def kernel(K: int, N: int, G: int, epi: EpilogueFn, dtype: str = "float16") -> Any:  # noqa: N803
    """The 2:4 kernel with the full ABI argument list; ``G`` = groups per row (values/positions have 2G columns)."""
    from tvm import tirx
    from tvm.script import tirx as T

    kc = chunk(K)
    words = kc // 2 + PAD_WORDS
    n_chunks = (K + kc - 1) // kc
    steps = kc // 16
    half = "uint16"
    ptx = "f16" if dtype == "float16" else "bf16"
    mma = T.ptx[f"mma.sp.sync.aligned.m16n8k16.row.col.f32.{ptx}.{ptx}.f32"]
    zero = T.float32(0)
    full = T.uint32(0xFFFFFFFF)

    def where(c: Any, a: Any, b: Any) -> Any:
        return tirx.Select(c, a, b)

    def pack(lo: Any, hi: Any) -> Any:
        """Two float32 values as one uint32 of 16-bit halves (lo in the low half)."""
        a = T.Cast("uint32", T.reinterpret(half, T.Cast(dtype, lo)))
        b = T.Cast("uint32", T.reinterpret(half, T.Cast(dtype, hi)))
        return T.bitwise_or(a, T.shift_left(b, T.uint32(16)))

    @T.prim_func
    def func(
        x: T.handle,
        values: T.Buffer((N, 2 * G), "float32"),
        positions: T.Buffer((N, 2 * G), "uint8"),
        bias: T.Buffer((N,), "float32"),
        r: T.handle,
        y: T.handle,
    ) -> None:
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        M = T.int64()
        X = T.match_buffer(x, (M, K), "float32")
        R = T.match_buffer(r, (M, N), "float32")
        Y = T.match_buffer(y, (M, N), "float32")
        for mb in T.thread_binding((M + M_TILE - 1) // M_TILE, thread="blockIdx.x"):
            for nb in T.thread_binding((N + N_TILE - 1) // N_TILE, thread="blockIdx.y"):
                for w in T.thread_binding(WARPS, thread="threadIdx.y"):
                    for lane in T.thread_binding(32, thread="threadIdx.x"):
                        # flat, indexed row * words + col: a 2-D buffer would be compacted to the columns actually
                        # read, dropping the bank-conflict padding
                        xs = T.alloc_buffer((M_TILE * words,), "uint32", scope="shared")
                        acc = T.alloc_buffer((M_TILES, 4), "float32", scope="local")
                        a = T.alloc_buffer((2,), "uint32", scope="local")
                        e = T.alloc_buffer((1,), "uint32", scope="local")
                        for j in T.unroll(M_TILES):
                            for i in T.unroll(4):
                                acc[j, i] = zero
                        for c in range(n_chunks):
                            # stage rows m0..m0+31, inputs c*kc..c*kc+kc-1 as 16-bit pairs (coalesced along k)
                            for it in range(M_TILE * (kc // 2) // (WARPS * 32)):
                                idx = it * (WARPS * 32) + w * 32 + lane
                                mm = mb * M_TILE + idx // (kc // 2)
                                k0 = c * kc + idx % (kc // 2) * 2
                                xs[idx // (kc // 2) * words + idx % (kc // 2)] = pack(
                                    T.if_then_else(mm < M and k0 < K, X[T.min(mm, M - 1), T.min(k0, K - 1)], zero),
                                    T.if_then_else(
                                        mm < M and k0 + 1 < K, X[T.min(mm, M - 1), T.min(k0 + 1, K - 1)], zero
                                    ),
                                )
                            T.tvm_storage_sync("shared")
                            for s in range(steps):
                                if c * kc + s * 16 < K:
                                    grp = (c * kc + s * 16) // 4 + L.a_group(lane)
                                    e[0] = T.uint32(0)
                                    for reg in T.unroll(2):
                                        n = nb * N_TILE + w * ROWS_PER_WARP + L.a_row(lane, reg)
                                        ok = n < N and grp < G
                                        nn = T.min(n, N - 1)
                                        gg = T.min(grp, G - 1)
                                        p0 = T.if_then_else(ok, T.Cast("int32", positions[nn, gg * 2]), 0)
                                        p1 = T.if_then_else(ok, T.Cast("int32", positions[nn, gg * 2 + 1]), 1)
                                        v0 = T.if_then_else(ok, values[nn, gg * 2], zero)
                                        v1 = T.if_then_else(ok, values[nn, gg * 2 + 1], zero)
                                        a[reg] = pack(
                                            L.canon_val(p0, p1, v0, v1, 0, zero, where),
                                            L.canon_val(p0, p1, v0, v1, 1, zero, where),
                                        )
                                        code = T.Cast(
                                            "uint32",
                                            L.canon_pos(p0, p1, 0, where, T.min)
                                            + L.canon_pos(p0, p1, 1, where, T.min) * 4,
                                        )
                                        e[0] = T.bitwise_or(
                                            e[0], T.shift_left(code, T.Cast("uint32", L.meta_shift(lane, reg)))
                                        )
                                    e[0] = T.bitwise_or(e[0], T.tvm_warp_shuffle_xor(full, e[0], 1, 32, 32))
                                    e[0] = T.bitwise_or(e[0], T.tvm_warp_shuffle_xor(full, e[0], 2, 32, 32))
                                    for j in T.unroll(M_TILES):
                                        mma(
                                            acc[j, 0], acc[j, 1], acc[j, 2], acc[j, 3],
                                            a[0], a[1],
                                            xs[(j * MMA_M + L.b_col(lane)) * words + s * 8 + L.b_k(lane, 0, 0) // 2],
                                            xs[(j * MMA_M + L.b_col(lane)) * words + s * 8 + L.b_k(lane, 1, 0) // 2],
                                            acc[j, 0], acc[j, 1], acc[j, 2], acc[j, 3],
                                            e[0], 0,
                                        )  # fmt: skip
                            T.tvm_storage_sync("shared")
                        for j in T.unroll(M_TILES):
                            for i in T.unroll(4):
                                n = nb * N_TILE + w * ROWS_PER_WARP + L.c_row(lane, i)
                                m = mb * M_TILE + j * MMA_M + L.c_col(lane, i)
                                if n < N and m < M:
                                    Y[m, n] = epi(acc[j, i], bias, R, m, n)

    return func
