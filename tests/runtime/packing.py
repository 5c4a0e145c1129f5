"""numpy packers for bsr:RxC and nm:N:M exactly as docs/internals.md lays them out (test-only, for validation
tests of the EP; the project's own packers live in sparsec/formats)."""

from __future__ import annotations

import numpy as np


def bsr_pack(w: np.ndarray, r: int, c: int) -> dict[str, np.ndarray]:
    n_out, k_in = w.shape
    data, indices, indptr = [], [], [0]
    for i in range(-(-n_out // r)):
        rs = min(i * r, n_out - r)
        for j in range(-(-k_in // c)):
            cs = min(j * c, k_in - c)
            block = w[rs : rs + r, cs : cs + c].copy()
            block[:, : max(0, j * c - cs)] = 0  # columns already covered by block column j-1
            if np.any(block):
                data.append(block)
                indices.append(cs)
        indptr.append(len(data))
    return {
        "data": np.asarray(data, dtype=np.float32).reshape(-1, r, c),
        "indices": np.asarray(indices, dtype=np.int32),
        "indptr": np.asarray(indptr, dtype=np.int32),
    }


def nm_pack(w: np.ndarray, n: int, m: int) -> dict[str, np.ndarray]:
    n_out, k_in = w.shape
    groups = -(-k_in // m)
    values = np.zeros((n_out, groups * n), np.float32)
    positions = np.zeros((n_out, groups * n), np.uint8)  # unused slots: value 0 at offset 0 (< K)
    for row in range(n_out):
        for g in range(groups):
            seg = w[row, g * m : (g + 1) * m]
            keep = np.sort(np.argsort(-np.abs(seg), kind="stable")[:n])
            keep = keep[seg[keep] != 0]
            values[row, g * n : g * n + len(keep)] = seg[keep]
            positions[row, g * n : g * n + len(keep)] = keep
    return {"values": values, "positions": positions}
