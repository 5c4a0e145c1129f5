"""The nm:2:4 kernel's arithmetic on the CPU, register by register (no GPU here; tests and gpu_check use this).

Two halves, written independently on purpose:
- ``mma_sp``: a model of the instruction ``mma.sp.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32``
  with sparsity selector 0, written from the PTX ISA's fragment tables (it does not use ``mma_layout``). It
  rejects metadata the ISA calls invalid (a group's two positions must be distinct and increasing).
- ``nm24_product``: what each lane of the kernel puts into those registers, step by step, using the same
  ``mma_layout`` functions the TVMScript template calls (re-encoding, 16-bit rounding, metadata bits, xor-OR
  across the quad), with fp32 accumulation across k16 steps. An encoding bug in ``mma_layout`` shows up as a
  mismatch against a float64 reference (tests pass a deliberately wrong layout to check that it does).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from . import mma_layout

LANES = np.arange(32)


def to_bits16(x: np.ndarray, dtype: str) -> np.ndarray:
    """float32 -> the 16-bit pattern the kernel's conversion produces (round to nearest even)."""
    x = np.asarray(x, np.float32)
    if dtype == "float16":
        return x.astype(np.float16).view(np.uint16)
    u = x.view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def from_bits16(h: np.ndarray, dtype: str) -> np.ndarray:
    h = np.asarray(h, np.uint16)
    if dtype == "float16":
        return h.view(np.float16).astype(np.float32)
    return (h.astype(np.uint32) << 16).view(np.float32)


def pack(lo: np.ndarray, hi: np.ndarray, dtype: str) -> np.ndarray:
    return to_bits16(lo, dtype).astype(np.uint32) | (to_bits16(hi, dtype).astype(np.uint32) << 16)


def _halves(reg: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    return from_bits16(reg & 0xFFFF, dtype), from_bits16(reg >> 16, dtype)


def mma_sp(a: np.ndarray, b: np.ndarray, c: np.ndarray, e: np.ndarray, dtype: str) -> np.ndarray:
    """D = A @ B + C for one warp: a u32[32, 2], b u32[32, 2], c f32[32, 4], e u32[32]; returns d f32[32, 4]."""
    comp = np.zeros((16, 8), np.float32)  # A compressed: 16 rows x 8 kept values
    bm = np.zeros((16, 8), np.float32)  # B: 16 k x 8 columns
    cm = np.zeros((16, 8), np.float32)
    for lane in range(32):
        gid, tig = lane // 4, lane % 4
        for r in range(2):
            lo, hi = _halves(a[lane, r], dtype)
            comp[gid + 8 * r, 2 * tig], comp[gid + 8 * r, 2 * tig + 1] = lo, hi
            lo, hi = _halves(b[lane, r], dtype)
            bm[2 * tig + 8 * r, gid], bm[2 * tig + 8 * r + 1, gid] = lo, hi
        for i in range(4):
            cm[gid + 8 * (i // 2), 2 * tig + i % 2] = c[lane, i]
    dense = np.zeros((16, 16), np.float32)
    for gid in range(8):
        meta = int(e[4 * gid])  # selector 0: the first thread of each group of four supplies the metadata
        for half in range(2):
            row = gid + 8 * half
            for j in range(4):  # 2:4 groups of the k16 step
                i0 = (meta >> (16 * half + 4 * j)) & 3
                i1 = (meta >> (16 * half + 4 * j + 2)) & 3
                if i0 >= i1:
                    raise ValueError(f"invalid mma.sp metadata: row {row} group {j} positions ({i0}, {i1})")
                dense[row, 4 * j + i0] = comp[row, 2 * j]
                dense[row, 4 * j + i1] = comp[row, 2 * j + 1]
    dm = (dense.astype(np.float64) @ bm.astype(np.float64)).astype(np.float32) + cm  # fp32 accumulation
    d = np.zeros((32, 4), np.float32)
    for lane in range(32):
        for i in range(4):
            d[lane, i] = dm[lane // 4 + 8 * (i // 2), 2 * (lane % 4) + i % 2]
    return d


def nm24_product(
    x: np.ndarray, values: np.ndarray, positions: np.ndarray, dtype: str = "float16", layout: ModuleType = mma_layout
) -> np.ndarray:
    """Y[M, N] = X @ W^T as the kernel computes it (no epilogue): 16 x 8 tiles, k16 steps, registers per lane."""
    L: Any = layout  # noqa: N806
    m_rows, k = x.shape
    n = values.shape[0]
    groups = values.shape[1] // 2
    y = np.zeros((m_rows, n), np.float32)
    pos = positions.astype(np.int64)
    for n0 in range(0, n, 16):
        for m0 in range(0, m_rows, 8):
            acc = np.zeros((32, 4), np.float32)
            for k0 in range(0, k, 16):
                grp = k0 // 4 + L.a_group(LANES)
                a = np.zeros((32, 2), np.uint32)
                e = np.zeros(32, np.uint32)
                for reg in range(2):
                    row = n0 + L.a_row(LANES, reg)
                    ok = (row < n) & (grp < groups)
                    rr, gg = np.minimum(row, n - 1), np.minimum(grp, groups - 1)
                    p0 = np.where(ok, pos[rr, 2 * gg], 0)
                    p1 = np.where(ok, pos[rr, 2 * gg + 1], 1)
                    v0 = np.where(ok, values[rr, 2 * gg], 0).astype(np.float32)
                    v1 = np.where(ok, values[rr, 2 * gg + 1], 0).astype(np.float32)
                    zero = np.float32(0)
                    w0 = L.canon_val(p0, p1, v0, v1, 0, zero, np.where)
                    w1 = L.canon_val(p0, p1, v0, v1, 1, zero, np.where)
                    a[:, reg] = pack(w0, w1, dtype)
                    q0 = L.canon_pos(p0, p1, 0, np.where, np.minimum)
                    code = q0 + 4 * L.canon_pos(p0, p1, 1, np.where, np.minimum)
                    e |= (code.astype(np.uint32) << L.meta_shift(LANES, reg).astype(np.uint32)).astype(np.uint32)
                e |= e[LANES ^ 1]  # the kernel's two xor-shuffles
                e |= e[LANES ^ 2]
                b = np.zeros((32, 2), np.uint32)
                col = m0 + L.b_col(LANES)
                for reg in range(2):
                    kk = [k0 + L.b_k(LANES, reg, h) for h in range(2)]
                    lo, hi = (
                        np.where((col < m_rows) & (q < k), x[np.minimum(col, m_rows - 1), np.minimum(q, k - 1)], 0)
                        for q in kk
                    )
                    b[:, reg] = pack(lo, hi, dtype)
                acc = mma_sp(a, b, acc, e, dtype)
            for i in range(4):
                rows = n0 + L.c_row(LANES, i)
                cols = m0 + L.c_col(LANES, i)
                keep = (rows < n) & (cols < m_rows)
                y[cols[keep], rows[keep]] = acc[keep, i]
    return y


def bsr_product(x: np.ndarray, packed: dict[str, np.ndarray], n: int, r: int, c: int, halo: int = -1) -> np.ndarray:
    """Y[M, N] as the BSR kernel computes it: X staged chunk by chunk (``templates.bsr.chunk`` inputs plus a halo
    of C-1 columns, zero past K), each block used in the chunk where it starts; the shifted last block row rewrites
    its overlapping rows. ``halo`` overrides C-1 (tests check that a short halo is caught)."""
    from .templates import bsr

    m_rows, k = x.shape
    kc = bsr.chunk(k, r, c)
    halo = c - 1 if halo < 0 else halo
    data, indices, indptr = packed["data"], packed["indices"], packed["indptr"]
    y = np.zeros((m_rows, n), np.float32)
    for ib in range(len(indptr) - 1):
        acc = np.zeros((m_rows, r), np.float32)
        for ch in range(-(-k // kc)):
            xs = np.zeros((m_rows, kc + halo), np.float32)
            cols = np.arange(ch * kc, min(ch * kc + kc + halo, k))
            xs[:, : len(cols)] = x[:, cols]
            for e in range(indptr[ib], indptr[ib + 1]):
                cs = int(indices[e])
                if ch * kc <= cs < ch * kc + kc:
                    for cc in range(c):
                        col = cs - ch * kc + cc
                        xv = xs[:, col] if col < xs.shape[1] else np.zeros(m_rows, np.float32)
                        acc += xv[:, None] * data[e, :, cc][None, :]
        rs = min(ib * r, n - r)
        y[:, rs : rs + r] = acc
    return y
