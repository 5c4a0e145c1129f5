"""Verification sizes derived from the graph (issue 15): a model that runs only at sizes its constants fix (a constant
feature map concatenated after a strided conv) compiles and verifies with no flags, where sparsec's usual guesses all
fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sparsec.compiler import compile_model
from sparsec.errors import SparsecError
from sparsec.implied_dims import implied_dims
from sparsec.options import CompileOptions
from sparsec.verify import DIM_TRIES, accepted_dims, random_feeds, reference_outputs


def embedded(stride: int, side: int = 20, height: str = "H") -> onnx.ModelProto:
    """x[N, 8, H, W] -> 3x3 conv (stride, pad 1) -> Concat with a constant [N, 4, side, side] (Expand) -> 1x1 conv:
    runs only where floor((H - 1) / stride) + 1 == side (and the same for W)."""
    rng = np.random.default_rng(0)

    def w(cout: int, cin: int, k: int) -> np.ndarray:
        return (rng.standard_normal((cout, cin, k, k)) * (rng.random((cout, cin, k, k)) < 0.2)).astype(np.float32)

    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"], name="c1", pads=[1, 1, 1, 1], strides=[stride, stride]),
        helper.make_node("Shape", ["x"], ["xs"], end=1),
        helper.make_node("Concat", ["xs", "tail"], ["ps"], axis=0),
        helper.make_node("Expand", ["pos", "ps"], ["pe"]),
        helper.make_node("Concat", ["c", "pe"], ["e"], axis=1),
        helper.make_node("Conv", ["e", "w2"], ["y"], name="c2"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, height, "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16, side, side])],
        initializer=[
            numpy_helper.from_array(w(16, 8, 3), "w1"),
            numpy_helper.from_array(rng.standard_normal((1, 4, side, side)).astype(np.float32), "pos"),
            numpy_helper.from_array(np.array([4, side, side], np.int64), "tail"),
            numpy_helper.from_array(w(16, 20, 1), "w2"),
        ],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize(("stride", "side", "size"), [(1, 20, 20), (2, 20, 39), (16, 20, 305), (2, 5, 9)])
def test_implied_sizes_are_the_smallest_the_graph_allows(stride: int, side: int, size: int) -> None:
    m = embedded(stride, side)
    assert implied_dims(m) == {"H": size, "W": size}  # N is free: nothing implied
    out = reference_outputs(m, random_feeds(m, {"N": 1, "H": size, "W": size}))
    assert out[0].shape == (1, 16, side, side)
    with pytest.raises(SparsecError, match="cannot run"):  # one less is refused: the size is the smallest
        reference_outputs(m, random_feeds(m, {"N": 1, "H": size - 1, "W": size}))


def test_unnamed_dims_are_reported_by_position() -> None:
    assert implied_dims(embedded(2, height="")) == {"x[2]": 39, "W": 39}


def test_a_model_the_inference_cannot_take_implies_nothing() -> None:
    m = embedded(2)
    m.graph.node[-2].op_type = "NoSuchOp"
    assert implied_dims(m) == {}


def test_compile_verifies_with_no_flags_where_only_the_graph_knows_the_size(tmp_path: Path) -> None:
    m = embedded(2)
    for d in DIM_TRIES:  # sparsec's usual guesses all fail on this model
        with pytest.raises(SparsecError):
            reference_outputs(m, random_feeds(m, {}, default_dim=d))
    assert accepted_dims(m, {}) == {"N": 2, "H": 39, "W": 39}
    src = tmp_path / "m.onnx"
    onnx.save(m, str(src))
    res = compile_model(src, tmp_path / "m.sparsec", CompileOptions(format="csr", verify=True))
    assert [la["format"] for la in res.layers] == ["csr", "csr"]
    assert res.checked == "2/2 sparse layers checked" and max(res.errors.values()) <= 1e-4
