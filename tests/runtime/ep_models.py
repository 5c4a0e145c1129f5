"""Models the EP tests share: the two-layer MLP (and its numpy reference) and a single sparsec layer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .conftest import Weights
from .onnx_models import SparseLayer, save_model

Session = Callable[..., Any]


def mlp_model(path: Path, w: Weights, **fc1_changes: Any) -> Path:
    """X[B,S,K] -> fc1 (sparsec) -> Relu (ORT) -> fc2 (sparsec, bias + residual R + relu) -> Y[B,S,N2]."""
    fc1 = SparseLayer("fc1", "X", "h", "k_fc1", w.K, w.N1, dict(w.p1), extra_ctx=";future_key=ignored")
    for key, value in fc1_changes.items():
        setattr(fc1, key, value)
    fc2 = SparseLayer("fc2", "hr", "Y", "k_fc2", w.N1, w.N2, dict(w.p2), bias=w.b2, residual="R", act="relu")
    from onnx import helper

    relu = helper.make_node("Relu", ["h"], ["hr"], name="relu")
    return save_model(
        path,
        [fc1, fc2],
        [relu],
        inputs={"X": ["B", "S", w.K], "R": ["B", "S", w.N2]},
        outputs={"Y": ["B", "S", w.N2]},
        value_shapes={"h": ["B", "S", w.N1], "hr": ["B", "S", w.N1]},
    )


def mlp_reference(w: Weights, x: np.ndarray, r: np.ndarray) -> np.ndarray:
    h = np.maximum(x @ w.W1.T, 0)
    return np.maximum(h @ w.W2.T + w.b2 + r, 0)


def single_layer_model(path: Path, layer: SparseLayer, x_type: int | None = None, x_shape: Any = None) -> Path:
    """X -> one sparsec node -> Y, X of rank 2 with a symbolic batch (or the given shape / element type)."""
    types = {"X": x_type} if x_type is not None else None
    return save_model(
        path,
        [layer],
        [],
        inputs={"X": x_shape or ["M", layer.K]},
        outputs={"Y": ["M", layer.N] if x_shape is None else [None] * len(x_shape)},
        input_types=types,
    )
