"""``csr``: unstructured sparsity, one compressed row per output (values, column indices, row pointers)."""

from __future__ import annotations

import numpy as np

from .base import Format, Packed, check_weight, specs_of


class Csr(Format):
    name = "csr"
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

    def array_specs(self, n: int, k: int, packed: Packed) -> list[tuple[str, tuple[int, ...], str]]:
        return specs_of(packed)

    def nnz_stored(self, packed: Packed) -> int:
        return int(packed["values"].size)
