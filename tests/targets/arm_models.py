"""Models and skip markers for the ARM target tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from models.synthetic import sparse_matrix, transformer_ffn
from sparsec.prune import parse_pattern, prune_model
from tests.passes.graphs import model

needs_cross = pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-g++") is None,
    reason="aarch64 cross compiler missing: install g++-aarch64-linux-gnu (tools/system_deps.sh)",
)
needs_qemu = pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-g++") is None
    or shutil.which("qemu-aarch64") is None
    or not Path("/usr/aarch64-linux-gnu/lib").is_dir(),
    reason="aarch64 cross toolchain or qemu-user missing: install them with tools/system_deps.sh",
)


def mlp(k: int = 64, hidden: int = 96, out: int = 40, density: float = 0.15, seed: int = 1) -> onnx.ModelProto:
    """x[batch, k] -> MatMul+Add -> Relu -> MatMul+Add -> Sigmoid: two sparse layers, fused epilogues."""
    rng = np.random.default_rng(seed)
    inits = {
        "w1": sparse_matrix(rng, (k, hidden), density),
        "b1": rng.standard_normal(hidden).astype(np.float32),
        "w2": sparse_matrix(rng, (hidden, out), density),
        "b2": rng.standard_normal(out).astype(np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="fc1_bias"),
        helper.make_node("Relu", ["h1"], ["h2"], name="fc1_relu"),
        helper.make_node("MatMul", ["h2", "w2"], ["h3"], name="fc2"),
        helper.make_node("Add", ["h3", "b2"], ["h4"], name="fc2_bias"),
        helper.make_node("Sigmoid", ["h4"], ["y"], name="fc2_sigmoid"),
    ]
    return model(nodes, inits, {"x": ["batch", k]}, {"y": ["batch", out]})


def for_format(m: onnx.ModelProto, fmt: str) -> onnx.ModelProto:
    """``m`` pruned so that ``fmt`` fits every layer (N:M: conforming groups; bsr: whole blocks at 80% sparsity);
    csr keeps the weights as they are."""
    family = fmt.split(":", 1)[0]
    if family == "csr":
        return m
    text = fmt if family == "nm" else f"block:{fmt.split(':')[1]}:0.8"
    return prune_model(m, parse_pattern(text))[0]


MODELS = {"mlp": mlp, "ffn": lambda: transformer_ffn(d=48, hidden=96, out=20, density=0.2, seed=2)}


def dynamic_int8_layer(
    w: np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None = None, relu: bool = False
) -> onnx.ModelProto:
    """One layer as quantize_dynamic writes it: ``y = float(MatMulInteger(q(x), W)) * (x_scale * w_scale)``, then
    ``+ bias`` and Relu when given; ``w`` an int8-valued W[K, N], ``w_scale`` one value or one per output. ``y`` is
    the last node's output (no node after the layer: on wasm an Identity would be a segment of its own)."""
    k, n = w.shape
    inits = {"w": w.astype(np.int8), "wz": np.array(0, np.int8), "ws": np.asarray(w_scale, np.float32)}
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("MatMulInteger", ["xq", "w", "xz", "wz"], ["acc"], name="layer"),
        helper.make_node("Cast", ["acc"], ["accf"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Mul", ["xs", "ws"], ["s"]),
        helper.make_node("Mul", ["accf", "s"], ["sc"]),
    ]
    last = "sc"
    if bias is not None:
        inits["b"] = bias.astype(np.float32)
        nodes.append(helper.make_node("Add", [last, "b"], ["yb"]))
        last = "yb"
    if relu:
        nodes.append(helper.make_node("Relu", [last], ["yr"]))
        last = "yr"
    nodes[-1].output[0] = "y"
    return model(nodes, inits, {"x": ["batch", k]}, {"y": ["batch", n]})
