"""analysis: which nodes are layers, their W[N, K] orientation, the sparsity profile, and why some are skipped."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import helper, numpy_helper

from models.synthetic import transformer_ffn
from sparsec.formats import get_format
from sparsec.formats.sparsity import profile_weight
from sparsec.layer import Layer
from sparsec.passes import analysis
from tests.passes.graphs import K, N, const, model, weight


def find_layers(m: onnx.ModelProto) -> list[Layer]:
    return analysis.find_layers(ir.from_proto(m).graph)


def stored(p: object, fmt: str, w: np.ndarray | None = None) -> int:
    return p.stored(get_format(fmt), w)  # type: ignore[attr-defined, no-any-return]


def test_transformer_ffn_orientation_and_gemm_folding() -> None:
    m = onnx.shape_inference.infer_shapes(transformer_ffn(d=48, hidden=96, out=20))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    layers = find_layers(m)
    assert [la.name for la in layers] == ["fc1", "fc2", "head"]
    np.testing.assert_array_equal(layers[0].w, inits["w1"].T)  # MatMul: W = B.T
    assert layers[0].w.shape == (96, 48) and layers[1].w.shape == (48, 96)
    head = layers[2]
    np.testing.assert_allclose(head.w, 0.5 * inits["w3"])  # Gemm transB=1, alpha=0.5
    np.testing.assert_allclose(head.bias, 2.0 * inits["b3"])  # beta=2
    assert all(la.skip == "" for la in layers)


def test_profile_counts() -> None:
    w = np.zeros((8, 8), np.float32)
    w[0, :4] = 1.0  # one row, 4 consecutive columns
    w[5, 0] = 2.0
    p = profile_weight(w)
    assert (p.nnz, p.zero_rows, p.zero_cols) == (5, 6, 4)
    assert p.density == 5 / 64
    assert p.nm["2:4"] == 15 / 16  # 16 groups of 4, only row 0's first group has 4 nonzeros
    assert p.nm["1:2"] == 30 / 32  # row 0's groups (0, 1) and (2, 3) break 1:2
    assert p.block_count["1x8"] == 2 and p.block_fill["1x8"] == 5 / 16
    assert p.block_count["1x4"] == 2 and p.block_fill["1x4"] == 5 / 8
    assert stored(p, "csr") == 5 and stored(p, "bsr:1x4") == 8 and stored(p, "nm:2:4") == 8 * 2 * 2
    assert stored(p, "bsr:2x3", w) == 3 * 6  # not a preset: counted on demand (blocks at cols 0, 3 and 5 of row 0)


def test_skips_are_reported_not_dropped() -> None:
    rng = np.random.default_rng(0)
    w = weight(rng)
    nodes = [
        helper.make_node("Gemm", ["x", "w", "c"], ["y1"], name="gemm_dyn_c", transB=1),
        helper.make_node("Transpose", ["x"], ["x_t"]),
        helper.make_node("MatMul", ["x", "x_t"], ["y2"], name="act_x_act"),  # no constant operand: not a layer
        helper.make_node("Conv", ["img", "k"], ["y3"], name="conv"),
        helper.make_node("Conv", ["img", "dk"], ["y5"], name="dw", group=3),
        helper.make_node("Conv", ["img", "gk"], ["y6"], name="grouped", group=3),
        helper.make_node("Conv", ["img1d", "k1d"], ["y7"], name="conv1d"),
        const("vec", rng.standard_normal(K)),
        helper.make_node("MatMul", ["vec", "wm"], ["y4"], name="vector_x"),
    ]
    inits = {
        "w": w,
        "k": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "dk": rng.standard_normal((3, 1, 3, 3)).astype(np.float32),
        "gk": rng.standard_normal((6, 1, 3, 3)).astype(np.float32),
        "k1d": rng.standard_normal((4, 3, 3)).astype(np.float32),
        "wm": w.T.copy(),
    }
    m = model(
        nodes,
        inits,
        {"x": [3, K], "c": [3, N], "img": [1, 3, 8, 8], "img1d": [1, 3, 8]},
        {
            "y1": [3, N],
            "y2": [3, 3],
            "y3": [1, 4, 6, 6],
            "y4": [N],
            "y5": [1, 3, 6, 6],
            "y6": [1, 6, 6, 6],
            "y7": [1, 4, 6],
        },
    )
    layers = {la.name: la for la in find_layers(m)}
    assert set(layers) == {"gemm_dyn_c", "conv", "dw", "grouped", "conv1d", "vector_x"}
    assert "not a constant" in layers["gemm_dyn_c"].skip
    assert not layers["conv"].skip and layers["conv"].w.shape == (4, 27)
    assert layers["conv"].geom is not None and (layers["conv"].geom.OH, layers["conv"].geom.OW) == (6, 6)
    assert layers["conv"].rows == 36  # batch 1 x 6x6 output pixels
    assert "depthwise convolution (group=3)" in layers["dw"].skip
    assert "grouped convolution (group=3)" in layers["grouped"].skip
    assert "2-D" in layers["conv1d"].skip
    assert "vector" in layers["vector_x"].skip


def test_unnamed_and_colliding_names_are_made_unique() -> None:
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="a/b"),
        helper.make_node("MatMul", ["h", "w2"], ["y"], name="a:b"),
        helper.make_node("MatMul", ["y", "w3"], ["z"]),
    ]
    inits = {"w": weight(rng, K, K).T.copy(), "w2": weight(rng, K, K).T.copy(), "w3": weight(rng).T.copy()}
    m = model(nodes, inits, {"x": ["batch", K]}, {"z": ["batch", N]})
    names = [la.name for la in find_layers(m)]
    assert names == ["a_b", "a_b_2", "MatMul_2"]
    assert find_layers(m)[2].rows is None  # symbolic batch


def test_static_rows() -> None:
    w = weight(np.random.default_rng(2))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")]
    m = model(nodes, {"w": w.T.copy()}, {"x": [2, 5, K]}, {"y": [2, 5, N]})
    assert find_layers(m)[0].rows == 10
