"""Conv graphs for the conv tests (onnx.helper, NCHW, symbolic batch, odd channel counts)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from sparsec.conv import ConvGeometry
from tests.passes.graphs import model

C_IN, H, W = 7, 11, 10  # odd channels, non-square, not multiples of any vector width
C_OUT = 13

# (name, kernel, strides, pads [t, l, b, r], dilations): every geometry the sparse conv path takes.
GEOMETRIES: tuple[tuple[str, int, tuple[int, int], tuple[int, int, int, int], tuple[int, int]], ...] = (
    ("pw", 1, (1, 1), (0, 0, 0, 0), (1, 1)),
    ("pw_s2", 1, (2, 2), (0, 0, 0, 0), (1, 1)),
    ("k3", 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    ("k3_valid", 3, (1, 1), (0, 0, 0, 0), (1, 1)),
    ("k3_s2", 3, (2, 2), (1, 1, 1, 1), (1, 1)),
    ("k3_d2_asym", 3, (1, 2), (2, 0, 1, 2), (2, 2)),
    ("k5", 5, (1, 1), (2, 2, 2, 2), (1, 1)),
)


def conv_weight(rng: np.random.Generator, cout: int, cin: int, k: int, density: float) -> np.ndarray:
    w = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
    return w * (rng.random(w.shape) < density)


def out_hw(k: int, s: tuple[int, int], p: tuple[int, int, int, int], d: tuple[int, int]) -> tuple[int, int]:
    g = ConvGeometry(C_IN, H, W, k, k, s[0], s[1], d[0], d[1], *p)
    return g.OH, g.OW


def conv_node(
    name: str, x: str, y: str, k: int, s: tuple[int, int], p: tuple[int, int, int, int], d: tuple[int, int], bias: bool
) -> onnx.NodeProto:
    inputs = [x, f"{name}_w"] + ([f"{name}_b"] if bias else [])
    return helper.make_node(
        "Conv", inputs, [y], name=name, kernel_shape=[k, k], strides=list(s), pads=list(p), dilations=list(d)
    )


def geometry_model(density: float, seed: int = 0) -> onnx.ModelProto:
    """Every geometry side by side on one input (odd layers with a Conv bias)."""
    rng = np.random.default_rng(seed)
    nodes, inits, outs = [], {}, {}
    for i, (name, k, s, p, d) in enumerate(GEOMETRIES):
        nodes.append(conv_node(name, "x", name, k, s, p, d, bias=i % 2 == 1))
        inits[f"{name}_w"] = conv_weight(rng, C_OUT, C_IN, k, density)
        if i % 2 == 1:
            inits[f"{name}_b"] = rng.standard_normal(C_OUT).astype(np.float32)
        outs[name] = ["batch", C_OUT, *out_hw(k, s, p, d)]
    return model(nodes, inits, {"x": ["batch", C_IN, H, W]}, outs)
