"""``dense``: the layer stays an ordinary ONNX op on ORT; packing is the identity (used for uniform handling)."""

from __future__ import annotations

import numpy as np

from .base import Format, Packed, WeightProfile, check_weight, gaussian


class Dense(Format):
    name = "dense"
    family = "dense"
    array_names = ("weight",)

    def pack(self, w: np.ndarray) -> Packed:
        return {"weight": check_weight(w).copy()}

    def unpack(self, packed: Packed, n: int, k: int) -> np.ndarray:
        return packed["weight"].reshape(n, k).astype(np.float32)

    def stored(self, profile: WeightProfile, w: np.ndarray | None = None) -> int:
        return profile.n * profile.k

    def random(self, n: int, k: int, density: float, rng: np.random.Generator) -> np.ndarray:
        w = gaussian(n, k, rng)
        return w * (rng.random((n, k)) < density)

    def nnz_stored(self, packed: Packed) -> int:
        return int(packed["weight"].size)
