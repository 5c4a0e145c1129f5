"""``int8:1x4``: an integer weight (a MatMulInteger's B less its zero point) in blocks of 1 output row x 4 input
columns, each block one 32-bit word of four int8 values, for the dot-product instructions that multiply four uint8
activations by four int8 weights and add them into one int32 (x86 AVX-512 VNNI ``vpdpbusd``).

Arrays, in kernel argument order: ``words`` int32[nb] (the block's four int8 values, lowest k in the lowest byte),
``indices`` int32[nb] (the block's word position w: columns 4w..4w+3; w = K//4 when K is not a multiple of 4 is
the shifted last block K-4..K-1, whose columns the previous block already covers are zero, as in ``bsr``; the
kernel reads the activation as the same words), ``indptr`` int32[N+1]
(row pointers) and ``sums`` int32[N] (each row's sum of weights: the kernel takes ``x_zero_point * sums[n]`` off
the uint8 products, exactly). Only integer layers whose weight (less its zero point) lies in -128..127 fit.
"""

from __future__ import annotations

import numpy as np

from .base import Format, Packed, WeightProfile, check_weight
from .bsr import Bsr

INT8_MIN, INT8_MAX = -128, 127


class Int8Blocks(Format):
    family = "int8"
    array_names = ("words", "indices", "indptr", "sums")

    def __init__(self) -> None:
        self.name = "int8:1x4"
        self._blocks = Bsr(1, 4)

    def misfit(self, w: np.ndarray, profile: WeightProfile | None = None) -> str:
        if w.ndim != 2:
            return super().misfit(w)
        if w.shape[1] < 4:
            return f"{self.name} needs K >= 4, weight is {w.shape[0]}x{w.shape[1]}"
        if w.size and (not np.array_equal(w, np.round(w)) or float(w.min()) < INT8_MIN or float(w.max()) > INT8_MAX):
            return f"{self.name} takes integer weights in {INT8_MIN}..{INT8_MAX} (an int8 weight less its zero point)"
        return ""

    def pack(self, w: np.ndarray) -> Packed:
        w = check_weight(w)
        why = self.misfit(w)
        if why:
            raise ValueError(why)
        blocks = self._blocks.pack(w)
        data = blocks["data"].reshape(-1, 4).astype(np.int8)
        k = w.shape[1]
        starts = blocks["indices"]
        return {
            "words": np.ascontiguousarray(data).view("<i4").reshape(-1).astype(np.int32),
            "indices": np.where(starts % 4 == 0, starts // 4, k // 4).astype(np.int32),
            "indptr": blocks["indptr"],
            "sums": w.sum(axis=1).astype(np.int32),
        }

    def unpack(self, packed: Packed, n: int, k: int) -> np.ndarray:
        data = np.ascontiguousarray(packed["words"].astype("<i4")).view(np.int8).reshape(-1, 1, 4)
        words = packed["indices"]
        starts = np.where(words == k // 4, k - 4, words * 4).astype(np.int32)  # K % 4 == 0: the same either way
        blocks = {"data": data.astype(np.float32), "indices": starts, "indptr": packed["indptr"]}
        return self._blocks.unpack(blocks, n, k)

    def stored(self, profile: WeightProfile, w: np.ndarray | None = None) -> int:
        return self._blocks.stored(profile, w)

    def random(self, n: int, k: int, density: float, rng: np.random.Generator) -> np.ndarray:
        mask = self._blocks.random(n, k, density, rng) != 0
        values = rng.integers(INT8_MIN, INT8_MAX + 1, (n, k)).astype(np.float32)
        values[values == 0] = 1  # every value of a kept block nonzero, as in the other formats' random weights
        return values * mask

    def nnz_stored(self, packed: Packed) -> int:
        return int(packed["words"].size) * 4
