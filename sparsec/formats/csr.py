"""``csr``: unstructured sparsity, one compressed row per output (values, column indices, row pointers)."""

from __future__ import annotations

import numpy as np

from .base import Format, Packed, WeightProfile, check_weight, gaussian


class Csr(Format):
    name = "csr"
    family = "csr"
    array_names = ("values", "indices", "indptr")

    def pack(self, w: np.ndarray) -> Packed:
        w = check_weight(w)
        rows, cols = np.nonzero(w)  # row-major order: rows ascending, columns ascending within a row
        indptr = np.zeros(w.shape[0] + 1, np.int32)
        np.cumsum(np.bincount(rows, minlength=w.shape[0]), out=indptr[1:])
        return {
            "values": np.ascontiguousarray(w[rows, cols], np.float32),
            "indices": cols.astype(np.int32),
            "indptr": indptr,
        }

    def unpack(self, packed: Packed, n: int, k: int) -> np.ndarray:
        w = np.zeros((n, k), np.float32)
        indptr = packed["indptr"]
        rows = np.repeat(np.arange(n), np.diff(indptr))
        w[rows, packed["indices"]] = packed["values"]
        return w

    def stored(self, profile: WeightProfile, w: np.ndarray | None = None) -> int:
        return profile.nnz

    def random(self, n: int, k: int, density: float, rng: np.random.Generator) -> np.ndarray:
        w = gaussian(n, k, rng)
        return w * (rng.random((n, k)) < density)

    def nnz_stored(self, packed: Packed) -> int:
        return int(packed["values"].size)
