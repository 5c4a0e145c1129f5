"""``nm:N:M``: at most N nonzeros in every group of M consecutive inputs (along K) of each output row.

Stored as N value slots per group plus each slot's offset inside the group (uint8). Unused slots hold 0.0 and
an offset that keeps the column inside K, so kernels read X without a bound check (docs/internals.md).
"""

from __future__ import annotations

import numpy as np

from .base import Format, Packed, WeightProfile, check_weight, gaussian


class NM(Format):
    family = "nm"
    array_names = ("values", "positions")

    def __init__(self, n: int, m: int) -> None:
        if not (1 <= n < m <= 255):
            raise ValueError(f"N:M needs 1 <= N < M <= 255, got {n}:{m}")
        self.n, self.m = n, m
        self.name = f"nm:{n}:{m}"

    def _groups(self, w: np.ndarray) -> np.ndarray:
        rows, k = w.shape
        g = -(-k // self.m)
        padded = np.zeros((rows, g * self.m), np.float32)
        padded[:, :k] = w
        return padded.reshape(rows, g, self.m)

    def conformity(self, w: np.ndarray) -> float:
        """Fraction of groups with at most N nonzeros."""
        if w.size == 0:
            return 1.0
        return float(np.mean(np.count_nonzero(self._groups(w), axis=2) <= self.n))

    def misfit(self, w: np.ndarray, profile: WeightProfile | None = None) -> str:
        if w.ndim != 2:
            return super().misfit(w)
        conform = profile.nm.get(f"{self.n}:{self.m}") if profile is not None else None
        if conform is None:
            conform = self.conformity(w)
        return f"weight does not conform to {self.name} ({conform:.0%} of groups do)" if conform < 1.0 else ""

    def pack(self, w: np.ndarray) -> Packed:
        w = check_weight(w)
        why = self.misfit(w)
        if why:
            raise ValueError(why)
        rows, k = w.shape
        grp = self._groups(w)
        # Stable sort puts the nonzero offsets first, in increasing order; zero slots follow.
        order = np.argsort(grp == 0, axis=2, kind="stable")[:, :, : self.n]
        vals = np.take_along_axis(grp, order, axis=2)
        pos = order.astype(np.int64)
        # Unused slots in the last (partial) group must still point inside K.
        base = np.arange(grp.shape[1])[None, :, None] * self.m
        pos = np.where((vals == 0) & (base + pos >= k), 0, pos)
        return {
            "values": np.ascontiguousarray(vals.reshape(rows, -1), np.float32),
            "positions": np.ascontiguousarray(pos.reshape(rows, -1), np.uint8),
        }

    def unpack(self, packed: Packed, n: int, k: int) -> np.ndarray:
        vals, pos = packed["values"], packed["positions"].astype(np.int64)
        g = vals.shape[1] // self.n
        cols = (np.arange(g).repeat(self.n) * self.m)[None, :] + pos
        w = np.zeros((n, g * self.m), np.float32)
        np.add.at(w, (np.arange(n)[:, None].repeat(vals.shape[1], 1), cols), vals)
        return w[:, :k]

    def stored(self, profile: WeightProfile, w: np.ndarray | None = None) -> int:
        return profile.n * (-(-profile.k // self.m)) * self.n

    def random(self, n: int, k: int, density: float, rng: np.random.Generator) -> np.ndarray:
        """N random positions of every M (the last group cut at K), each kept with probability ``density``."""
        w = gaussian(n, k, rng)
        g = -(-k // self.m)
        order = np.argsort(rng.random((n, g, self.m)), axis=2)
        keep = np.zeros((n, g, self.m), bool)
        np.put_along_axis(keep, order[:, :, : self.n], True, axis=2)
        keep &= rng.random((n, g, self.m)) < density
        return w * keep.reshape(n, -1)[:, :k]

    def nnz_stored(self, packed: Packed) -> int:
        return int(packed["values"].size)
