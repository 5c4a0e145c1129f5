"""fuse on conv nodes: a bias must broadcast per channel; SiLU / HardSwish patterns (structure and numbers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from sparsec.layer import Kernel
from tests.conv_graphs import conv_weight
from tests.passes.graphs import compile_and_compare, matmul_model, model, ops, stage, weight

N_OUT, C, S = 6, 5, 6  # output channels == width: a [N] constant broadcasts along W, not along channels


def conv_then(add_shape: tuple[int, ...]) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Add", ["c", "a"], ["y"]),
    ]
    inits = {"w": conv_weight(rng, N_OUT, C, 1, 0.4), "a": rng.standard_normal(add_shape).astype(np.float32)}
    return model(nodes, inits, {"x": ["batch", C, S, S]}, {"y": ["batch", N_OUT, S, S]})


def fused(m: onnx.ModelProto, layer: str) -> tuple[onnx.ModelProto, Kernel]:
    """The model after ``fuse`` (every layer csr) and ``layer``'s kernel."""
    out, layers = stage(onnx.shape_inference.infer_shapes(m), "fuse")
    onnx.checker.check_model(out)
    kernel = next(la.kernel for la in layers if la.name == layer)
    assert kernel is not None
    return out, kernel


def test_channel_bias_fused(tmp_path: Path) -> None:
    for shape in [(N_OUT, 1, 1), (1, N_OUT, 1, 1), (1,)]:
        m, info = fused(conv_then(shape), "conv")
        assert ops(m) == ["EPContext"] and info.epilogue.bias and info.conv is not None
    _, err = compile_and_compare(conv_then((1, N_OUT, 1, 1)), tmp_path, batches=(1, 2))
    assert err < 1e-4


def test_width_broadcast_is_not_a_bias(tmp_path: Path) -> None:
    """[N] broadcasts along W in NCHW: fusing it as a per-channel bias would be wrong, so the Add stays."""
    m, info = fused(conv_then((N_OUT,)), "conv")
    assert ops(m) == ["EPContext", "Add"] and not info.epilogue.bias
    _, err = compile_and_compare(conv_then((N_OUT,)), tmp_path, batches=(1, 2))
    assert err < 1e-4


def test_silu_on_matmul(tmp_path: Path) -> None:
    tail = [helper.make_node("Sigmoid", ["mm"], ["g"]), helper.make_node("Mul", ["mm", "g"], ["y"])]
    m = matmul_model(weight(np.random.default_rng(3), density=0.3), tail)
    fm, info = fused(m, "fc")
    assert ops(fm) == ["EPContext"] and info.epilogue.act == "silu"
    _, err = compile_and_compare(m, tmp_path, batches=(1, 5))
    assert err < 1e-4


def test_sigmoid_mul_of_another_value_is_not_silu() -> None:
    """Mul(y, sigmoid(y)) only: sigmoid(y) * r is a gate, not SiLU; only the Sigmoid could fuse, and it may not
    (its output has one consumer, but y also feeds the Mul)."""
    tail = [helper.make_node("Sigmoid", ["mm"], ["g"]), helper.make_node("Mul", ["g", "mm2"], ["y"])]
    tail.insert(0, helper.make_node("Relu", ["mm"], ["mm2"]))
    m = matmul_model(weight(np.random.default_rng(4), density=0.3), tail)
    fm, info = fused(m, "fc")
    assert info.epilogue.act == "none" and ops(fm) == ["EPContext", "Relu", "Sigmoid", "Mul"]
