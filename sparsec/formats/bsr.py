"""``bsr:RxC``: block sparsity with R output rows x C input columns per block.

Sizes that are not multiples of the block shape are handled without padding the activations: the last block
row starts at N-R (its rows overlap the previous block row and carry the same true values, so writing them
twice is idempotent) and the last block column starts at K-C with the already-covered columns zeroed. Block
column indices are therefore element offsets, not block numbers (docs/internals.md).
"""

from __future__ import annotations

import numpy as np

from .base import Format, Packed, WeightProfile, check_weight, gaussian


def _starts(total: int, size: int) -> np.ndarray:
    """Start offset of each block along one axis, the last one shifted back to stay in bounds."""
    count = -(-total // size)
    return np.minimum(np.arange(count) * size, total - size)


class Bsr(Format):
    family = "bsr"
    array_names = ("data", "indices", "indptr")

    def __init__(self, r: int, c: int) -> None:
        if r < 1 or c < 1:
            raise ValueError(f"block shape must be positive, got {r}x{c}")
        self.r, self.c = r, c
        self.name = f"bsr:{r}x{c}"

    def misfit(self, w: np.ndarray, profile: WeightProfile | None = None) -> str:
        if w.ndim != 2:
            return super().misfit(w)
        n, k = w.shape
        return (
            f"{self.name} needs N >= {self.r} and K >= {self.c}, weight is {n}x{k}" if n < self.r or k < self.c else ""
        )

    def blocks(self, w: np.ndarray) -> np.ndarray:
        """All blocks as [rows, cols, R, C], shifted/zeroed as the layout says."""
        n, k = w.shape
        r, c = self.r, self.c
        rs, cs = _starts(n, r), _starts(k, c)
        ridx = rs[:, None] + np.arange(r)  # [nbr, R]
        cidx = cs[:, None] + np.arange(c)  # [nbc, C]
        blk = w[ridx[:, None, :, None], cidx[None, :, None, :]].copy()  # [nbr, nbc, R, C]
        if k % c:  # last block column: zero the columns the previous block column already covers
            blk[:, -1, :, : c - k % c] = 0.0
        return blk

    def pack(self, w: np.ndarray) -> Packed:
        w = check_weight(w)
        why = self.misfit(w)
        if why:
            raise ValueError(why)
        blk = self.blocks(w)
        keep = np.any(blk != 0, axis=(2, 3))  # [nbr, nbc]
        cs = _starts(w.shape[1], self.c)
        indptr = np.zeros(keep.shape[0] + 1, np.int32)
        np.cumsum(keep.sum(axis=1), out=indptr[1:])
        bi, bj = np.nonzero(keep)
        return {
            "data": np.ascontiguousarray(blk[bi, bj], np.float32).reshape(-1, self.r, self.c),
            "indices": cs[bj].astype(np.int32),
            "indptr": indptr,
        }

    def unpack(self, packed: Packed, n: int, k: int) -> np.ndarray:
        w = np.zeros((n, k), np.float32)
        rs = _starts(n, self.r)
        indptr, indices, data = packed["indptr"], packed["indices"], packed["data"]
        # Later (shifted) block rows first, so the earlier rows overwrite the overlap with identical values.
        for i in reversed(range(len(rs))):
            rowblk = np.zeros((self.r, k), np.float32)
            for e in range(indptr[i], indptr[i + 1]):
                c0 = int(indices[e])
                rowblk[:, c0 : c0 + self.c] += data[e]  # the shifted last block holds zeros where it overlaps
            w[rs[i] : rs[i] + self.r] = rowblk
        return w

    def stored(self, profile: WeightProfile, w: np.ndarray | None = None) -> int:
        key = f"{self.r}x{self.c}"
        if key not in profile.block_count:
            if w is None:
                raise KeyError(self.name)
            profile.block_count[key] = nonzero_blocks(w, self.r, self.c)
        return profile.block_count[key] * self.r * self.c

    def random(self, n: int, k: int, density: float, rng: np.random.Generator) -> np.ndarray:
        w = gaussian(n, k, rng)
        keep = rng.random((-(-n // self.r), -(-k // self.c))) < density
        mask = np.zeros((n, k), bool)
        for i, j in zip(*np.nonzero(keep), strict=True):
            rs, cs = min(i * self.r, n - self.r), min(j * self.c, k - self.c)
            mask[rs : rs + self.r, cs : cs + self.c] = True
        return w * mask

    def nnz_stored(self, packed: Packed) -> int:
        return int(packed["data"].size)


def nonzero_blocks(w: np.ndarray, r: int, c: int) -> int:
    """Blocks of the r x c layout of W holding a nonzero (0 when W is smaller than a block)."""
    if w.shape[0] < r or w.shape[1] < c:
        return 0
    return int(np.count_nonzero(np.any(Bsr(r, c).blocks(w) != 0, axis=(2, 3))))
