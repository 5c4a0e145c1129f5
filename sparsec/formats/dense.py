"""``dense``: the layer stays an ordinary ONNX op on ORT; packing is the identity (used for uniform handling)."""

from __future__ import annotations

import numpy as np

from .base import Format, Packed, check_weight, specs_of


class Dense(Format):
    name = "dense"
    array_names = ("weight",)

    def pack(self, w: np.ndarray) -> Packed:
        return {"weight": check_weight(w).copy()}

    def unpack(self, packed: Packed, n: int, k: int) -> np.ndarray:
        return packed["weight"].reshape(n, k).astype(np.float32)

    def array_specs(self, n: int, k: int, packed: Packed) -> list[tuple[str, tuple[int, ...], str]]:
        return specs_of(packed)

    def nnz_stored(self, packed: Packed) -> int:
        return int(packed["weight"].size)
