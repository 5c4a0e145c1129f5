"""Helpers shared by the prune tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def check_nm(w: np.ndarray, out: np.ndarray, n: int, m: int) -> None:
    """Every group of m consecutive inputs along K keeps at most n values: the largest ones, untouched."""
    rows, k = w.shape
    for i in range(rows):
        for g in range(0, k, m):
            src, got = w[i, g : g + m], out[i, g : g + m]
            kept = got != 0
            assert kept.sum() == min(n, src.size), (i, g)
            np.testing.assert_array_equal(got[kept], src[kept])
            if not kept.all():
                assert np.abs(src[~kept]).max() <= np.abs(src[kept]).min()


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The model's initializers as arrays, by name."""
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
