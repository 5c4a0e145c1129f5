"""The sparsity profile of a weight W[N, K] for every preset block shape and N:M pattern (analysis, cost model)."""

from __future__ import annotations

import numpy as np

from .base import WeightProfile
from .bsr import nonzero_blocks
from .nm import NM

BLOCK_SHAPES: tuple[tuple[int, int], ...] = ((1, 16), (16, 1), (4, 4), (8, 1), (1, 8), (2, 2), (4, 1), (1, 4))
NM_PATTERNS: tuple[tuple[int, int], ...] = ((1, 2), (2, 4), (1, 4), (2, 8), (4, 8))


def profile_weight(w: np.ndarray) -> WeightProfile:
    """Sparsity profile of W[N, K] for every N:M pattern and block shape in the registry."""
    n, k = w.shape
    nz = w != 0
    nnz = int(np.count_nonzero(nz))
    nm = {f"{a}:{b}": NM(a, b).conformity(w) for a, b in NM_PATTERNS}
    fill: dict[str, float] = {}
    count: dict[str, int] = {}
    for r, c in BLOCK_SHAPES:
        if n < r or k < c:
            continue
        blocks = nonzero_blocks(w, r, c)
        count[f"{r}x{c}"] = blocks
        fill[f"{r}x{c}"] = nnz / (blocks * r * c) if blocks else 1.0
    zero_rows = int(np.count_nonzero(~nz.any(axis=1)))
    zero_cols = int(np.count_nonzero(~nz.any(axis=0)))
    return WeightProfile(n, k, nnz, nm, fill, count, zero_rows, zero_cols)
