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


# (activation, the ONNX nodes it is written as): every conv epilogue activation fuse knows.
ACTS = ("relu", "relu6", "sigmoid", "silu", "hardswish", "hardsigmoid_mul")


def act_nodes(act: str, x: str, y: str) -> list[onnx.NodeProto]:
    if act == "relu6":
        return [helper.make_node("Clip", [x, "zero", "six"], [y])]
    if act in ("relu", "sigmoid"):
        return [helper.make_node(act.capitalize(), [x], [y])]
    if act == "hardswish":
        return [helper.make_node("HardSwish", [x], [y])]
    gate = f"{y}_gate"
    if act == "silu":
        return [helper.make_node("Sigmoid", [x], [gate]), helper.make_node("Mul", [gate, x], [y])]
    return [
        helper.make_node("HardSigmoid", [x], [gate], alpha=1 / 6, beta=0.5),
        helper.make_node("Mul", [x, gate], [y]),
    ]


def epilogue_model(density: float = 0.3, seed: int = 1) -> onnx.ModelProto:
    """Per activation: a 3x3 conv (odd ones pointwise) + per-channel bias Add [1, N, 1, 1] + residual Add + act."""
    rng = np.random.default_rng(seed)
    nodes, outs = [], {}
    inits: dict[str, np.ndarray] = {"zero": np.array(0.0, np.float32), "six": np.array(6.0, np.float32)}
    for i, act in enumerate(ACTS):
        k, pad = (1, 0) if i % 2 else (3, 1)
        nodes.append(conv_node(f"c{i}", "x", f"c{i}", k, (1, 1), (pad,) * 4, (1, 1), bias=False))  # type: ignore[arg-type]
        inits[f"c{i}_w"] = conv_weight(rng, C_OUT, C_IN, k, density)
        inits[f"c{i}_add"] = rng.standard_normal((1, C_OUT, 1, 1)).astype(np.float32)
        nodes.append(helper.make_node("Add", [f"c{i}", f"c{i}_add"], [f"b{i}"]))
        nodes.append(helper.make_node("Add", ["r", f"b{i}"], [f"s{i}"]))
        nodes += act_nodes(act, f"s{i}", f"y{i}")
        outs[f"y{i}"] = ["batch", C_OUT, H, W]
    return model(nodes, inits, {"x": ["batch", C_IN, H, W], "r": ["batch", C_OUT, H, W]}, outs)
