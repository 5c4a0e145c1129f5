"""The weight-format interface: every sparse format packs W[N, K] (one row per output) into named arrays.

The order of the arrays returned by ``pack`` is the kernel argument order (docs/internals.md). A format also owns
its family (the kernel template that runs it), the test of whether a weight fits it (``misfit``) and a generator
of random weights with its structure (``random``: tests, calibration and benchmarks draw their weights from it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

Packed = dict[str, np.ndarray]


@dataclass
class WeightProfile:
    """The sparsity structure of W[N, K] (``profile.profile_weight``; ``block_count`` fills in lazily for block
    shapes outside the presets)."""

    n: int
    k: int
    nnz: int
    nm: dict[str, float]  # "2:4" -> fraction of groups that conform
    block_fill: dict[str, float]  # "16x1" -> nonzeros / values stored in nonzero blocks (1.0: perfectly blocked)
    block_count: dict[str, int]  # "16x1" -> nonzero blocks
    zero_rows: int
    zero_cols: int

    @property
    def density(self) -> float:
        return self.nnz / max(1, self.n * self.k)

    def stored(self, f: Format, w: np.ndarray | None = None) -> int:
        """Values format ``f`` stores for this weight (explicit zeros in blocks and N:M slots included); ``w`` is
        needed only for a block shape the profile has not counted."""
        return f.stored(self, w)


class Format(ABC):
    """A named weight layout with pack / unpack, a fit test and a random generator."""

    name: str
    family: str  # "dense" | "csr" | "bsr" | "nm": formats of one family share a kernel template
    array_names: tuple[str, ...]  # packed arrays, in kernel argument order

    @abstractmethod
    def pack(self, w: np.ndarray) -> Packed:
        """Pack a float32 W[N, K]; raises ValueError when W does not fit this format."""

    @abstractmethod
    def unpack(self, packed: Packed, n: int, k: int) -> np.ndarray:
        """Rebuild the dense float32 W[N, K] from packed arrays."""

    def misfit(self, w: np.ndarray, profile: WeightProfile | None = None) -> str:
        """Why ``pack`` cannot represent W exactly ("" when it can); ``profile`` may answer without scanning W."""
        return "" if w.ndim == 2 else f"weight must be 2-D, got shape {list(w.shape)}"

    def fits(self, w: np.ndarray) -> bool:
        """Whether ``pack`` can represent W exactly."""
        return not self.misfit(w)

    @abstractmethod
    def stored(self, profile: WeightProfile, w: np.ndarray | None = None) -> int:
        """Values this format stores for a weight with ``profile`` (explicit zeros in blocks and N:M slots included)."""

    @abstractmethod
    def random(self, n: int, k: int, density: float, rng: np.random.Generator) -> np.ndarray:
        """A random float32 W[n, k] with this format's structure and about ``density`` of its values nonzero
        (N:M: of the pattern's own N/M)."""

    def array_specs(self, packed: Packed) -> list[tuple[str, tuple[int, ...], str]]:
        """(name, shape, dtype) of each packed array, in kernel argument order."""
        return [(name, tuple(int(d) for d in a.shape), str(a.dtype)) for name, a in packed.items()]

    @abstractmethod
    def nnz_stored(self, packed: Packed) -> int:
        """Number of stored values (explicit zeros inside blocks / N:M slots included)."""


def check_weight(w: np.ndarray) -> np.ndarray:
    """Validate and return W as a C-contiguous float32 matrix."""
    if w.ndim != 2:
        raise ValueError(f"weight must be 2-D, got shape {w.shape}")
    return np.ascontiguousarray(w, dtype=np.float32)


def gaussian(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """The values random weights start from."""
    return rng.standard_normal((n, k)).astype(np.float32)
