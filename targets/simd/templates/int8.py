"""``int8:1x4`` on int8 dot-product instructions: Y = float32((X - x_zero_point) @ W^T), exactly, for a uint8
X[M, K] and an int8 W in 1x4 blocks (sparsec/formats/int8.py). One template, three instructions (``Dot``):

- x86 AVX-512 VNNI ``vpdpbusd`` (``VNNI``): 16 int32 lanes, each adding four uint8 x int8 products, 64
  multiply-adds per instruction (an fp32 FMA does 16), with no int16 saturation.
- ARM ``sdot`` (``SDOT``, Armv8.2 dot products: Cortex-A55/A76 and later, Neoverse N1): 4 int32 lanes of four
  int8 x int8 products. The uint8 activation is made int8 by flipping each byte's top bit (x ^ 0x80 = x - 128, in the
  transpose), and the zero point comes off as ``x_zero_point - 128``: the same exact integer sum.
- WebAssembly SIMD128 ``i32x4.dot_i16x8_s`` (``WASM_DOT``, every engine with SIMD128): 4 int32 lanes of two int16 x
  int16 products, returned rather than accumulated. The transpose widens each word's bytes to two int16 pairs (two
  rows of XT), each block's weight bytes are sign-extended to the same pairs, and a block is two instructions and
  two additions: |x * w| <= 255 * 128, the same exact integer sum.

The activation is read as 32-bit words (four consecutive k of one token) and transposed into XT[word, token]
(tokens in the lanes): with many token tiles each parallel task owns one tile (``mu`` vectors of tokens) and its own
L2-resident XT; with few (fewer than one tile, or fewer tiles than tasks) X is transposed once and the tasks split
the output rows. Per (block, vector of tokens) one dot-product instruction. The zero point comes off once per output
row (``x_zero_point * sums[n]``) and the int32 sum is converted to float32 as ORT's Cast does (round to nearest), so
the output equals MatMulInteger followed by a Cast bit for bit. benchmarks/int8_kernels.py times it against ORT's
int8 MatMul (x86).

The epilogue (``epi``, targets/simd/epilogue.py ``make_int8_epilogue``) takes the int32 sum: with a run-time
``scale`` (``x_scale * w_scale``, one value or one per output) it multiplies the converted sum, then adds the bias
and the residual and applies the activation, rounded as ORT's separate Mul and Adds.

ABI: ``kernel(X u8[M, K], words i32[nb], indices i32[nb], indptr i32[N+1], sums i32[N], x_zero_point u8[1],
[scale f32[S]], [bias f32[N]], [residual f32[M, N]], Y f32[M, N])`` (S = 1 or N; the bracketed ones only with that
epilogue); ``indices`` are word positions (columns 4w..4w+3; w = K//4 is the shifted last block K-4..K-1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...tir import ScaledEpilogueFn
from .common import TASKS


@dataclass(frozen=True)
class Dot:
    """An int8 dot-product instruction: ``lanes`` int32 accumulators, each adding four products of a byte of the
    activation (``activation``: its LLVM type, ``uint8`` or ``int8``) and a byte of the weight (int8); or, with
    ``activation`` "int16", two products of int16 values (wasm's ``i32x4.dot_i16x8_s``, which returns the sums
    rather than adding them to an accumulator): the activation's bytes are widened to int16 pairs in the transpose
    (two rows of XT per word) and each block's weight to two int16 pairs, two instructions per block."""

    intrinsic: str
    lanes: int
    activation: str  # "uint8": X as it is; "int8": X's bytes flipped to x - 128; "int16": widened, in pairs

    @property
    def flips(self) -> bool:
        return self.activation == "int8"

    @property
    def widens(self) -> bool:
        return self.activation == "int16"


VNNI = Dot("llvm.x86.avx512.vpdpbusd.512", 16, "uint8")
SDOT = Dot("llvm.aarch64.neon.sdot", 4, "int8")
# WebAssembly SIMD128 has no 8-bit dot product (relaxed SIMD's i8x16 one takes 7-bit operands, and node 20 lacks it)
WASM_DOT = Dot("llvm.wasm.dot", 4, "int16")
FLIP = -0x7F7F7F80  # 0x80808080 as int32: the top bit of each byte
MID_TOKENS = 16  # below a whole tile, from this many tokens on, tiles of this many (where that is several vectors)


def word_count(K: int) -> int:  # noqa: N803
    """XT's rows: the activation's 32-bit words per token, the shifted last one K-4..K-1 included."""
    return K // 4 + (1 if K % 4 else 0)


def xt_rows(K: int, dot: Dot) -> int:  # noqa: N803
    """XT's rows: one per word, two (its int16 pairs) where ``dot`` widens."""
    return word_count(K) * (2 if dot.widens else 1)


def _widen(v: Any, n: int, half: int) -> Any:
    """Bytes 2 * half and 2 * half + 1 of each int32 lane of ``v`` (``n`` lanes) as the two uint16 halves of a lane."""
    from tvm import tirx

    def c(value: int) -> Any:
        return tirx.Broadcast(tirx.const(value, "int32"), n) if n > 1 else tirx.const(value, "int32")

    if half == 0:
        return tirx.bitwise_or(tirx.bitwise_and(v, c(0xFF)), tirx.shift_left(tirx.bitwise_and(v, c(0xFF00)), c(8)))
    low = tirx.bitwise_and(tirx.shift_right(v, c(16)), c(0xFF))
    return tirx.bitwise_or(low, tirx.bitwise_and(tirx.shift_right(v, c(8)), c(0xFF0000)))


def _transpose_macro(K: int, dot: Dot) -> Any:  # noqa: N803
    """``transpose(X, XT, M, m_lo, col, cols)``: XT[w, col + i] = the word w (columns 4w..4w+3, the last one
    K-4..K-1) of token m_lo + i for i < ``cols``, a multiple of the lanes (tokens past M repeat the last one; their
    outputs are never stored), each byte flipped where ``dot`` takes int8, or its two halves widened to int16 pairs
    in rows 2w and 2w + 1 where ``dot`` widens. From K >= 4 * lanes: blocks of lanes tokens x lanes words, each lanes
    vector loads of a token's 4 * lanes bytes and ``transpose_vectors`` (the last block shifted back to end at word
    K//4 - 1), then the shifted last word alone."""
    from tvm import tirx
    from tvm.script import tirx as T

    from .common import transpose_vectors

    lanes, words_k = dot.lanes, word_count(K)
    full = K // 4  # whole words; word K // 4 (K % 4 != 0) is the shifted one

    def flip(v: Any, n: int) -> Any:  # n int32 lanes
        return tirx.bitwise_xor(v, tirx.Broadcast(tirx.const(FLIP, "int32"), n) if n > 1 else FLIP) if dot.flips else v

    def put(XT: Any, value: Any, w: Any, cols: Any, n: int) -> None:  # noqa: N803
        if not dot.widens:
            T.buffer_store(XT, value, [w, cols])
            return
        for half in (0, 1):
            T.buffer_store(XT, _widen(value, n, half), [w * 2 + half, cols])

    def block(X: Any, XT: Any, M: Any, m_lo: Any, col: Any, i0: Any, w0: Any) -> None:  # noqa: N803
        rows = [
            flip(
                tirx.reinterpret(f"int32x{lanes}", X[tirx.min(m_lo + i0 + i, M - 1), tirx.Ramp(w0 * 4, 1, 4 * lanes)]),
                lanes,
            )
            for i in range(lanes)
        ]
        for j, column in enumerate(transpose_vectors(rows)):
            put(XT, column, w0 + j, tirx.Ramp(col + i0, 1, lanes), lanes)

    def word(X: Any, XT: Any, M: Any, m: Any, k0: Any, w: Any, c: Any) -> None:  # noqa: N803
        put(XT, flip(tirx.reinterpret("int32", X[tirx.min(m, M - 1), tirx.Ramp(k0, 1, 4)]), 1), w, c, 1)

    if full < lanes:

        @T.macro
        def transpose_words(X, XT, M, m_lo, col, cols):  # noqa: N803
            for i in range(cols):
                for w in range(words_k):
                    word(X, XT, M, m_lo + i, T.min(w * 4, K - 4), w, col + i)

        return transpose_words

    @T.macro
    def transpose(X, XT, M, m_lo, col, cols):  # noqa: N803
        for ib in range(cols // lanes):
            for wb in range((full + lanes - 1) // lanes):
                block(X, XT, M, m_lo, col, ib * lanes, T.min(wb * lanes, full - lanes))
        if words_k > full:
            for i in range(cols):
                word(X, XT, M, m_lo + i, K - 4, full, col + i)

    return transpose


def _pair(word: Any, half: int) -> Any:
    """Bytes 2 * half and 2 * half + 1 of the int32 ``word``, sign-extended, as the two int16 halves of an int32."""
    from tvm import tirx

    def byte(b: int) -> Any:
        return tirx.shift_right(tirx.shift_left(word, tirx.const(24 - 8 * b, "int32")), tirx.const(24, "int32"))

    low = tirx.bitwise_and(byte(2 * half), tirx.const(0xFFFF, "int32"))
    return tirx.bitwise_or(low, tirx.shift_left(byte(2 * half + 1), tirx.const(16, "int32")))


def _accumulate_macro(dot: Dot) -> Any:
    """``accumulate(acc, XT, w, col, word, u)``: the ``u``-th vector of ``acc`` plus the products of the block
    ``word`` (four int8 values) and XT's word ``w`` of the tokens from ``col``."""
    from tvm.script import tirx as T

    lanes = dot.lanes
    bytes_ = f"{dot.activation}x{4 * lanes}"

    @T.macro
    def accumulate(acc, XT, w, col, word, u):  # noqa: N803
        acc[T.ramp(u * lanes, 1, lanes)] = T.call_llvm_pure_intrin(
            f"int32x{lanes}",
            dot.intrinsic,
            acc[T.ramp(u * lanes, 1, lanes)],
            T.reinterpret(bytes_, XT[w, T.ramp(col + u * lanes, 1, lanes)]),
            T.reinterpret(f"int8x{4 * lanes}", T.broadcast(word, lanes)),
        )

    @T.macro
    def accumulate_pairs(acc, XT, w, col, word, u):  # noqa: N803
        acc[T.ramp(u * lanes, 1, lanes)] = (
            acc[T.ramp(u * lanes, 1, lanes)]
            + T.call_llvm_pure_intrin(
                f"int32x{lanes}",
                dot.intrinsic,
                T.reinterpret(f"int16x{2 * lanes}", XT[w * 2, T.ramp(col + u * lanes, 1, lanes)]),
                T.reinterpret(f"int16x{2 * lanes}", T.broadcast(_pair(word, 0), lanes)),
            )
            + T.call_llvm_pure_intrin(
                f"int32x{lanes}",
                dot.intrinsic,
                T.reinterpret(f"int16x{2 * lanes}", XT[w * 2 + 1, T.ramp(col + u * lanes, 1, lanes)]),
                T.reinterpret(f"int16x{2 * lanes}", T.broadcast(_pair(word, 1), lanes)),
            )
        )

    return accumulate_pairs if dot.widens else accumulate


def _rows_macro(N: int, rg: int, mu: int, epi: ScaledEpilogueFn, dot: Dot) -> Any:  # noqa: N803
    """``rows(XT, col, Y, words, indices, indptr, sums, zp, S, B, R, M, m_lo, part, per)``: the ``mu`` vectors of
    tokens from m_lo (XT's columns from ``col``) against one task's share of the output row groups (S, B, R: the
    epilogue's scale, bias and residual)."""
    from tvm.script import tirx as T

    lanes = dot.lanes
    mt = lanes * mu
    groups = -(-N // rg)
    offset = 128 if dot.flips else 0  # flipped bytes are x - 128: the zero point moves with them
    accumulate = _accumulate_macro(dot)

    @T.macro
    def rows(XT, col, Y, words, indices, indptr, sums, zp, S, B, R, M, m_lo, part, per):  # noqa: N803
        # a loop from 0 (TVM 0.27 mis-indexes a serial loop whose start is a run-time value)
        for g in range(T.max(0, T.min(groups - part * per, per))):
            n0 = T.min((part * per + g) * rg, N - rg)
            L = T.alloc_buffer((rg, mt), "int32", scope="global")
            for r in range(rg):
                acc = T.alloc_buffer((mt,), "int32", scope="global")
                for u in T.unroll(mu):
                    acc[T.ramp(u * lanes, 1, lanes)] = T.broadcast(T.int32(0), lanes)
                for j in range(indptr[n0 + r], indptr[n0 + r + 1]):
                    for u in T.unroll(mu):
                        accumulate(acc, XT, indices[j], col, words[j], u)
                for i in T.vectorized(mt):
                    L[r, i] = acc[i] - (T.Cast("int32", zp[0]) - offset) * sums[n0 + r]
            for mm in range(T.min(mt, M - m_lo)):
                for r in T.vectorized(rg):
                    Y[m_lo + mm, n0 + r] = epi(L[r, mm], S, B, R, m_lo + mm, n0 + r)

    return rows


def _shared_macro(K: int, N: int, rg: int, mu: int, epi: ScaledEpilogueFn, dot: Dot) -> Any:  # noqa: N803
    """``shared(X, Y, words, indices, indptr, sums, zp, S, B, R, M)``: X transposed once (tiles of ``mu`` vectors
    of tokens), then the tasks split the output row groups of each tile among them (few tiles: every core busy)."""
    from tvm.script import tirx as T

    mt = dot.lanes * mu
    groups = -(-N // rg)
    words_k = xt_rows(K, dot)
    transpose = _transpose_macro(K, dot)
    rows = _rows_macro(N, rg, mu, epi, dot)

    @T.macro
    def shared(X, Y, words, indices, indptr, sums, zp, S, B, R, M):  # noqa: N803
        blocks = (M + mt - 1) // mt
        parts = T.max(1, T.min(groups, (TASKS + blocks - 1) // blocks))
        per = (groups + parts - 1) // parts
        XT = T.alloc_buffer((words_k, (M + mt - 1) // mt * mt), "int32")  # shape from M, not a let
        for t in T.parallel(blocks):
            transpose(X, XT, M, t * mt, t * mt, mt)
        for task in T.parallel(blocks * parts):
            m_lo = task // parts * mt
            rows(XT, m_lo, Y, words, indices, indptr, sums, zp, S, B, R, M, m_lo, task % parts, per)

    return shared


def kernel(  # noqa: N803
    K: int,
    N: int,
    nb: int,
    epi: ScaledEpilogueFn,
    dot: Dot,
    scales: int = 1,
    mu: int = 4,  # noqa: N803
) -> Any:
    """The kernel on ``dot`` (its ABI in the module docstring, every optional buffer present: ``tir.finish`` drops
    the unused ones); ``scales`` values of the scale; ``mu`` vectors of tokens per tile from one whole tile of
    tokens up (below it, tiles of one vector)."""
    from tvm.script import tirx as T

    rg = min(dot.lanes, N)
    groups = -(-N // rg)
    words_k = xt_rows(K, dot)
    mt = dot.lanes * mu  # tokens per tile from one whole tile up
    transpose = _transpose_macro(K, dot)
    rows = _rows_macro(N, rg, mu, epi, dot)
    shared_small, shared_big = _shared_macro(K, N, rg, 1, epi, dot), _shared_macro(K, N, rg, mu, epi, dot)
    small = shared_small
    mid_mu = min(mu, MID_TOKENS // dot.lanes)  # x86: 1 (no middle path); ARM: 4 vectors
    if mid_mu > 1:  # from MID_TOKENS tokens, tiles of that many (ARM: each block's loads serve 4 vectors, not 1)
        shared_mid = _shared_macro(K, N, rg, mid_mu, epi, dot)

        @T.macro
        def small(X, Y, words, indices, indptr, sums, zp, S, B, R, M):  # noqa: N803
            if M < MID_TOKENS:
                shared_small(X, Y, words, indices, indptr, sums, zp, S, B, R, M)
            else:
                shared_mid(X, Y, words, indices, indptr, sums, zp, S, B, R, M)

    @T.prim_func
    def func(
        x: T.handle,
        words: T.Buffer((nb,), "int32"),
        indices: T.Buffer((nb,), "int32"),
        indptr: T.Buffer((N + 1,), "int32"),
        sums: T.Buffer((N,), "int32"),
        zp: T.Buffer((1,), "uint8"),
        scale: T.Buffer((scales,), "float32"),
        bias: T.Buffer((N,), "float32"),
        r: T.handle,
        y: T.handle,
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        M = T.int64()
        X = T.match_buffer(x, (M, K), "uint8")
        R = T.match_buffer(r, (M, N), "float32")
        Y = T.match_buffer(y, (M, N), "float32")
        if M < mt:  # tiles of one vector (ARM: of 4 vectors from MID_TOKENS tokens)
            small(X, Y, words, indices, indptr, sums, zp, scale, bias, R, M)
        elif groups > 1 and (M + mt - 1) // mt < TASKS:  # fewer tiles than tasks: the tasks split the output rows
            shared_big(X, Y, words, indices, indptr, sums, zp, scale, bias, R, M)
        else:  # one task per token tile, its own L2-resident transposed tile
            for task in T.parallel((M + mt - 1) // mt):
                XT = T.alloc_buffer((words_k, mt), "int32", scope="global")
                transpose(X, XT, M, task * mt, 0, mt)
                rows(XT, 0, Y, words, indices, indptr, sums, zp, scale, bias, R, M, task * mt, 0, groups)

    return func
