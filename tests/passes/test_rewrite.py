"""rewrite: MatMul/Gemm -> sparsec EPContext nodes with packed weights (structure), and the numbers through the EP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from sparsec.formats import get_format
from sparsec.node import decode
from tests.passes.graphs import K, N, compile_and_compare, matmul_model, model, ops, weight, with_formats


def sparse_nodes(m: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in m.graph.node if n.op_type == "EPContext"]


def attr(node: onnx.NodeProto, name: str) -> object:
    value = next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name)
    return value.decode() if isinstance(value, bytes) else value


def initializers(m: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}


@pytest.mark.parametrize("fmt", ["csr", "bsr:4x4", "bsr:16x1", "nm:2:4"])
def test_matmul_becomes_sparse_node_with_packed_weight(fmt: str) -> None:
    w = weight(np.random.default_rng(0), density=0.3)
    if fmt.startswith("nm"):
        w = np.where(np.arange(K) % 4 < 2, w, 0.0).astype(np.float32)
    m, layers = with_formats(matmul_model(w), {"fc": fmt})
    assert {name: la.kernel.symbol for name, la in layers.items() if la.kernel} == {"fc": "sparsec_k0"}
    (node,) = sparse_nodes(m)
    assert node.domain == "com.microsoft" and attr(node, "source") == "SparsecEP" and attr(node, "embed_mode") == 1
    info = decode(str(attr(node, "ep_cache_context")))
    assert (info.symbol, info.format, info.K, info.N, info.epilogue.bias) == ("sparsec_k0", fmt, K, N, False)
    f = get_format(fmt)
    assert list(node.input) == ["x"] + [f"fc__{a}" for a in f.array_names] and list(node.output) == ["y"]
    inits = initializers(m)
    packed = {a: inits[f"fc__{a}"] for a in f.array_names}
    np.testing.assert_array_equal(f.unpack(packed, N, K), w)
    assert "w" not in inits  # the dense weight is gone
    assert any(o.domain == "com.microsoft" for o in m.opset_import)


def test_dense_layers_and_shared_weights_untouched() -> None:
    rng = np.random.default_rng(1)
    w = weight(rng, K, K)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="a"),
        helper.make_node("MatMul", ["h", "w"], ["y"], name="b"),
    ]
    m = model(nodes, {"w": w.T.copy()}, {"x": ["batch", K]}, {"y": ["batch", K]})
    m, _ = with_formats(m, {"a": "csr", "b": "dense"})
    assert ops(m) == ["EPContext", "MatMul"]
    assert "w" in initializers(m)  # still read by the dense layer


def test_kernel_symbols_follow_graph_order() -> None:
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("MatMul", ["x", f"w{i}"], [f"y{i}"], name=f"l{i}") for i in range(3)]
    inits = {f"w{i}": weight(rng).T.copy() for i in range(3)}
    m = model(nodes, inits, {"x": ["batch", K]}, {f"y{i}": ["batch", N] for i in range(3)})
    _, layers = with_formats(m, {"l0": "csr", "l1": "dense", "l2": "bsr:4x4"})
    assert {name: la.kernel.symbol for name, la in layers.items() if la.kernel} == {
        "l0": "sparsec_k0",
        "l2": "sparsec_k1",
    }


@pytest.mark.parametrize(
    "trans_a,trans_b,alpha,beta", [(0, 0, 1.0, 1.0), (0, 1, 0.5, 2.0), (1, 0, 1.5, 0.0), (1, 1, 1.0, 1.0)]
)
def test_gemm_attributes(tmp_path: Path, trans_a: int, trans_b: int, alpha: float, beta: float) -> None:
    rng = np.random.default_rng(3)
    w = weight(rng)
    b = w if trans_b else w.T.copy()
    a_shape: list[int | str] = [K, "batch"] if trans_a else ["batch", K]
    node = helper.make_node(
        "Gemm", ["a", "b", "c"], ["y"], name="g", transA=trans_a, transB=trans_b, alpha=alpha, beta=beta
    )
    m = model([node], {"b": b, "c": rng.standard_normal(N).astype(np.float32)}, {"a": a_shape}, {"y": ["batch", N]})
    rewritten, err = compile_and_compare(m, tmp_path)
    assert ops(rewritten) == (["Transpose", "EPContext"] if trans_a else ["EPContext"])
    info = decode(str(attr(sparse_nodes(rewritten)[0], "ep_cache_context")))
    assert info.epilogue.bias
    assert err < 1e-4
