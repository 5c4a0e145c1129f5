"""``python -m benchmarks.vnni_probe``: a design probe for issue 16's int8 kernels, not yet a sparsec format.

An exact int8 sparse MatMul on AVX-512 VNNI: the weight W[N, K] (int8) in 1x4 blocks (4 consecutive k of one output
row, one 32-bit word each), the uint8 activation viewed as 32-bit words (4 consecutive k of one token) and transposed
per task into an L2-resident tile (tokens in the 16 lanes), one ``vpdpbusd`` per (block, 16 tokens): 64 multiply-adds
per instruction against an fp32 FMA's 16, with the int32 sums exact (no int16 saturation). The activation zero point
is taken out once per output row (``x_zero_point * sum_k W[n, k]``), and the int32 result converted to float32 as
ORT's Cast does. Timed interleaved, 2 threads, against ORT's own int8 path on the dense weight (DynamicQuantizeLinear
+ MatMulInteger, which ORT fuses into DynamicQuantizeMatMul: passes/calibrate_measure.int8_dense_runner), for
unstructured 90% weights (whose 1x4 blocks are ~34% occupied) and weights pruned in 1x4 blocks
(``sparsec prune --pattern block:1x4:0.9``). Every result is checked against int64 numpy first.

Needs a CPU with AVX-512 VNNI. M is a multiple of 64 (a tile of 4 vectors of tokens); N a multiple of 64.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from .common import THREADS, set_tvm_threads

LANES = 16  # int32 lanes of a zmm register
MU = 4  # token vectors per tile (accumulators per output row)
RG = 16  # output rows per group (Y written as vectors along n)
PARTS = 4  # parallel tasks per token tile (each a quarter of the output row groups)


def vnni_kernel(k: int, n: int, blocks: int) -> Any:
    """The probe's TIR kernel: ``f(x32[M, K/4] int32, words[blocks], block_k[blocks], indptr[N+1], zp_sums[N], y)``."""
    from tvm.script import tirx as T

    kb_count, mt, groups = k // 4, LANES * MU, n // RG

    @T.prim_func
    def kernel(
        x: T.handle,
        words: T.Buffer((blocks,), "int32"),
        block_k: T.Buffer((blocks,), "int32"),
        indptr: T.Buffer((n + 1,), "int32"),
        zp_sums: T.Buffer((n,), "int32"),
        y: T.handle,
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        M = T.int64()
        X = T.match_buffer(x, (M, kb_count), "int32")
        Y = T.match_buffer(y, (M, n), "float32")
        for task in T.parallel(M // mt * PARTS):
            m_lo = task // PARTS * mt
            part = task % PARTS
            XT = T.alloc_buffer((kb_count, mt), "int32", scope="global")
            for kb in range(kb_count):
                for i in T.vectorized(mt):
                    XT[kb, i] = X[m_lo + i, kb]
            for g in range(groups // PARTS):
                n0 = (part * (groups // PARTS) + g) * RG
                L = T.alloc_buffer((RG, mt), "int32", scope="global")
                for r in range(RG):
                    acc = T.alloc_buffer((mt,), "int32", scope="global")
                    for u in T.unroll(MU):
                        acc[T.ramp(u * LANES, 1, LANES)] = T.broadcast(T.int32(0), LANES)
                    for j in range(indptr[n0 + r], indptr[n0 + r + 1]):
                        for u in T.unroll(MU):
                            acc[T.ramp(u * LANES, 1, LANES)] = T.call_llvm_pure_intrin(
                                "int32x16",
                                "llvm.x86.avx512.vpdpbusd.512",
                                acc[T.ramp(u * LANES, 1, LANES)],
                                T.reinterpret("uint8x64", XT[block_k[j], T.ramp(u * LANES, 1, LANES)]),
                                T.reinterpret("int8x64", T.broadcast(words[j], LANES)),
                            )
                    for i in T.vectorized(mt):
                        L[r, i] = acc[i] - zp_sums[n0 + r]
                for mm in range(mt):
                    for r in T.vectorized(RG):
                        Y[m_lo + mm, n0 + r] = T.Cast("float32", L[r, mm])

    return kernel


def pack_1x4(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W[N, K] int8 as (one int32 word per nonzero 1x4 block, its k/4, row pointers)."""
    n, k = w.shape
    blocks = w.reshape(n, k // 4, 4)
    nonzero = np.any(blocks != 0, axis=2)
    indptr = np.concatenate([[0], np.cumsum(nonzero.sum(1))]).astype(np.int32)
    rows, kbs = np.nonzero(nonzero)
    words = np.ascontiguousarray(blocks[rows, kbs]).view(np.int32).reshape(-1)
    return words.astype(np.int32), kbs.astype(np.int32), indptr


def pruned_weight(rng: np.random.Generator, n: int, k: int, pattern: str) -> np.ndarray:
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    if pattern == "unstructured":
        w[rng.random((n, k)) < 0.9] = 0
        return w
    keep = rng.random((n, k // 4)) >= 0.9
    return (w.reshape(n, k // 4, 4) * keep[:, :, None]).reshape(n, k).astype(np.int8)


def probe_runner(w: np.ndarray, x: np.ndarray, x_zero_point: int) -> tuple[Callable[[], object], float]:
    """The compiled probe on (W, X) and its block occupancy; its result is checked against int64 numpy."""
    import tvm

    from sparsec.targets.registry import get_target

    n, k = w.shape
    words, block_k, indptr = pack_1x4(w)
    lib = tvm.compile(vnni_kernel(k, n, len(words)), target=tvm.target.Target(get_target("x86").llvm_target()))
    dev = tvm.cpu()
    zp_sums = (x_zero_point * w.astype(np.int32).sum(1)).astype(np.int32)
    args = [
        tvm.runtime.tensor(a, dev)
        for a in (x.view(np.int32).reshape(x.shape[0], k // 4), words, block_k, indptr, zp_sums)
    ]
    y = tvm.runtime.tensor(np.zeros((x.shape[0], n), np.float32), dev)
    lib(*args, y)
    ref = ((x.astype(np.int64) - x_zero_point) @ w.T.astype(np.int64)).astype(np.float32)
    if not np.array_equal(y.numpy(), ref):
        raise AssertionError(f"probe kernel differs from int64 numpy by {np.abs(y.numpy() - ref).max()}")
    return (lambda: lib(*args, y)), len(words) / (n * k / 4)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, nargs="*", default=[128, 1024], help="token counts (multiples of 64)")
    ap.add_argument("--budget", type=float, default=1.5, help="seconds of interleaved timing per row")
    args = ap.parse_args(argv)
    from sparsec.passes.calibrate_measure import int8_dense_runner
    from sparsec.targets.x86.target import cpu_flags
    from sparsec.timing import TVM_GAP_S, interleaved

    if "avx512_vnni" not in cpu_flags():
        print("this CPU has no AVX-512 VNNI", file=sys.stderr)
        return 2
    set_tvm_threads()
    rng = np.random.default_rng(0)
    print("| M | K x N | weight | 1x4 blocks occupied | probe ms | ORT int8 ms | vs ORT int8 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for m in args.m:
        for k, n in ((384, 1536), (1536, 384), (768, 3072), (3072, 768)):
            for pattern in ("unstructured", "block:1x4"):
                w = pruned_weight(rng, n, k, pattern)
                x = rng.integers(0, 256, (m, k)).astype(np.uint8)
                probe, occupied = probe_runner(w, x, 128)
                ort = int8_dense_runner(np.ascontiguousarray(w.T), m, THREADS)
                res = interleaved({"probe": probe, "ort": ort}, budget_s=args.budget, gaps={"probe": TVM_GAP_S})
                a, b = res["probe"]["median_ms"], res["ort"]["median_ms"]
                print(f"| {m} | {k}x{n} | {pattern} 90% | {occupied:.2f} | {a:.3f} | {b:.3f} | {b / a:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
