"""The weight-format interface: every sparse format packs W[N, K] (one row per output) into named arrays.

The order of the arrays returned by ``pack`` is the kernel argument order (docs/internals.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

Packed = dict[str, np.ndarray]


class Format(ABC):
    """A named weight layout with pack / unpack and a conformance check."""

    name: str
    array_names: tuple[str, ...]  # packed arrays, in kernel argument order

    @abstractmethod
    def pack(self, w: np.ndarray) -> Packed:
        """Pack a float32 W[N, K]; raises ValueError when W does not fit this format."""

    @abstractmethod
    def unpack(self, packed: Packed, n: int, k: int) -> np.ndarray:
        """Rebuild the dense float32 W[N, K] from packed arrays."""

    def fits(self, w: np.ndarray) -> bool:
        """Whether ``pack`` can represent W exactly."""
        return w.ndim == 2

    @abstractmethod
    def array_specs(self, n: int, k: int, packed: Packed) -> list[tuple[str, tuple[int, ...], str]]:
        """(name, shape, dtype) of each packed array, in kernel argument order."""

    @abstractmethod
    def nnz_stored(self, packed: Packed) -> int:
        """Number of stored values (explicit zeros inside blocks / N:M slots included)."""


def check_weight(w: np.ndarray) -> np.ndarray:
    """Validate and return W as a C-contiguous float32 matrix."""
    if w.ndim != 2:
        raise ValueError(f"weight must be 2-D, got shape {w.shape}")
    return np.ascontiguousarray(w, dtype=np.float32)


def specs_of(packed: Packed) -> list[tuple[str, tuple[int, ...], str]]:
    """Array specs read off packed arrays (the shapes are exact for a given weight)."""
    return [(name, tuple(int(d) for d in a.shape), str(a.dtype)) for name, a in packed.items()]
