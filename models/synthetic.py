"""Small generated models with sparse weights, for tests and the quick demo path (no binaries in git).

``transformer_ffn``: X[batch, seq, D] -> MatMul+Add -> Gelu (PyTorch's Erf form) -> MatMul+Add -> +X (residual),
then a Gemm(transB=1, alpha, beta) head with Relu: the patterns the compiler must rewrite and fuse.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def sparse_matrix(rng: np.random.Generator, shape: tuple[int, int], density: float) -> np.ndarray:
    w = (rng.standard_normal(shape) * 0.1).astype(np.float32)
    w[rng.random(shape) >= density] = 0.0
    return w


def _const(name: str, value: float) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, np.float32)))


def transformer_ffn(
    d: int = 48, hidden: int = 96, out: int = 20, density: float = 0.1, seed: int = 0
) -> onnx.ModelProto:
    """An FFN block plus a Gemm head, symbolic batch and sequence."""
    rng = np.random.default_rng(seed)
    w1 = sparse_matrix(rng, (d, hidden), density)  # MatMul layout [K, N]
    w2 = sparse_matrix(rng, (hidden, d), density)
    w3 = sparse_matrix(rng, (out, d), density)  # Gemm transB=1 layout [N, K]
    inits = [
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(rng.standard_normal(hidden).astype(np.float32), "b1"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(rng.standard_normal(d).astype(np.float32), "b2"),
        numpy_helper.from_array(w3, "w3"),
        numpy_helper.from_array(rng.standard_normal(out).astype(np.float32), "b3"),
        numpy_helper.from_array(np.array([-1, d], np.int64), "flat"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="fc1_bias"),
        _const("sqrt2", float(np.sqrt(2.0))),
        _const("one", 1.0),
        _const("half", 0.5),
        helper.make_node("Div", ["h1", "sqrt2"], ["g0"], name="gelu_div"),
        helper.make_node("Erf", ["g0"], ["g1"], name="gelu_erf"),
        helper.make_node("Add", ["g1", "one"], ["g2"], name="gelu_add"),
        helper.make_node("Mul", ["h1", "g2"], ["g3"], name="gelu_mul"),
        helper.make_node("Mul", ["g3", "half"], ["g4"], name="gelu_half"),
        helper.make_node("MatMul", ["g4", "w2"], ["h2"], name="fc2"),
        helper.make_node("Add", ["h2", "b2"], ["h3"], name="fc2_bias"),
        helper.make_node("Add", ["h3", "x"], ["y"], name="residual"),
        helper.make_node("Reshape", ["y", "flat"], ["y2"], name="flatten"),
        helper.make_node("Gemm", ["y2", "w3", "b3"], ["z0"], name="head", transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["z0"], ["z"], name="head_relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "transformer_ffn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", d])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", d]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, out]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sparsec-models")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def save(model: onnx.ModelProto, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(p))
    return p


if __name__ == "__main__":
    import sys

    print(save(transformer_ffn(), sys.argv[1] if len(sys.argv) > 1 else "ffn.onnx"))
