"""shrink: channels nobody reads, or that are exactly zero, leave both layers of a pair (structure and numbers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sparsec.options import CompileOptions
from sparsec.passes.graph import to_proto
from sparsec.passes.shrink import ShrinkPass
from sparsec.passes.state import Compilation
from sparsec.targets.registry import get_target
from tests.conv_graphs import conv_weight
from tests.passes.graphs import compile_and_compare, model, ops, weight

K, HID, N = 11, 9, 7
UNREAD = [1, 4]  # rows of C's B that are zero: C never reads these hidden features
ZERO_OUT = [6]  # columns of P's B that are zero: with no bias and Relu these hidden features are exactly 0


def mlp(act: str = "Relu", hidden_is_output: bool = False) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    b1 = weight(rng, HID, K, 0.6).T.copy()  # MatMul layout [K, HID]
    b2 = weight(rng, N, HID, 0.6).T.copy()  # [HID, N]
    b1[:, ZERO_OUT] = 0
    b2[UNREAD, :] = 0
    nodes = [
        helper.make_node("MatMul", ["x", "b1"], ["h"], name="p"),
        helper.make_node(act, ["h"], ["a"], name="act"),
        helper.make_node("MatMul", ["a", "b2"], ["y"], name="c"),
    ]
    outs: dict[str, list[int | str]] = {"y": ["batch", N]}
    if hidden_is_output:
        outs["a"] = ["batch", HID]
    return model(nodes, {"b1": b1, "b2": b2}, {"x": ["batch", K]}, outs)


def shrink(m: onnx.ModelProto) -> list[str]:
    """Run the shrink stage on ``m`` in place; the lines it said (one per shrunk pair)."""
    import onnx_ir as ir

    said: list[str] = []
    state = Compilation(get_target("x86"), CompileOptions(verify=False), source=m, say=said.append)
    model = ir.from_proto(m)
    ShrinkPass(state)(model)
    m.CopyFrom(to_proto(model, state.source))
    return [line.removeprefix("shrunk ") for line in said]


def weights(m: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}


def test_unread_and_zero_channels_removed() -> None:
    m = mlp()
    before = weights(m)
    lines = shrink(m)
    after = weights(m)
    keep = [i for i in range(HID) if i not in UNREAD + ZERO_OUT]
    assert lines == [f"p -> c: {len(UNREAD) + len(ZERO_OUT)} of {HID} channels removed"]
    np.testing.assert_array_equal(after["b1"], before["b1"][:, keep])
    np.testing.assert_array_equal(after["b2"], before["b2"][keep, :])
    assert ops(m) == ["MatMul", "Relu", "MatMul"]
    shapes = {v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim] for v in m.graph.value_info}
    assert shapes["h"] == ["batch", len(keep)] and shapes["a"] == ["batch", len(keep)]
    onnx.checker.check_model(m)


def test_sigmoid_keeps_zero_rows_but_drops_unread() -> None:
    """sigmoid(0) = 0.5: a zero row of P still feeds C; only the features C does not read go."""
    m = mlp("Sigmoid")
    assert shrink(m) == [f"p -> c: {len(UNREAD)} of {HID} channels removed"]


def test_graph_outputs_and_shared_weights_untouched() -> None:
    m = mlp(hidden_is_output=True)
    assert shrink(m) == [] and weights(m)["b1"].shape == (K, HID)
    shared = mlp()
    shared.graph.node.append(helper.make_node("MatMul", ["x", "b1"], ["z"], name="other"))
    shared.graph.output.append(helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, ["batch", HID]))
    assert shrink(shared) == []


def test_mlp_numbers(tmp_path: Path) -> None:
    _, err = compile_and_compare(mlp(), tmp_path, fmt="csr", batches=(1, 4))
    assert err < 1e-4


def conv_pair() -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    w1 = conv_weight(rng, 6, 5, 3, 0.5)
    w1[2] = 0  # output channel 2 of P: zero weights and zero bias -> exactly 0 after Relu
    bias = rng.standard_normal(6).astype(np.float32)
    bias[2] = 0
    w2 = conv_weight(rng, 4, 6, 3, 0.5)
    w2[:, 4] = 0  # C never reads channel 4
    nodes = [
        helper.make_node("Conv", ["x", "w1", "bias"], ["h"], name="p", pads=[1] * 4),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("Conv", ["a", "w2"], ["y"], name="c", pads=[1] * 4, strides=[2, 2]),
    ]
    return model(nodes, {"w1": w1, "bias": bias, "w2": w2}, {"x": ["batch", 5, 9, 8]}, {"y": ["batch", 4, 5, 4]})


def test_conv_pair(tmp_path: Path) -> None:
    m = conv_pair()
    assert shrink(m) == ["p -> c: 2 of 6 channels removed"]
    w = weights(m)
    assert w["w1"].shape == (4, 5, 3, 3) and w["bias"].shape == (4,) and w["w2"].shape == (4, 4, 3, 3)
    rewritten, err = compile_and_compare(conv_pair(), tmp_path, fmt="csr", batches=(1, 3))
    assert err < 1e-4
    assert [tuple(t.dims) for t in rewritten.graph.initializer if t.name.endswith("indptr")] == [(5,), (5,)]


def biased_mlp() -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """MatMul + Add(bias) + Relu + MatMul with zero columns 2 (bias -1) and 3 (bias +1) in P's B."""
    rng = np.random.default_rng(5)
    b1 = weight(rng, HID, K, 0.6).T.copy()
    b1[:, [2, 3]] = 0
    bias = rng.standard_normal(HID).astype(np.float32)
    bias[2], bias[3] = -1.0, 1.0
    b2 = weight(rng, N, HID, 0.6).T.copy()
    b2[[2, 3], :] = 1.0
    nodes = [
        helper.make_node("MatMul", ["x", "b1"], ["h"], name="p"),
        helper.make_node("Add", ["bias", "h"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["a"]),
        helper.make_node("MatMul", ["a", "b2"], ["y"], name="c"),
    ]
    m = model(nodes, {"b1": b1, "bias": bias, "b2": b2}, {"x": ["batch", K]}, {"y": ["batch", N]})
    return m, bias, b2


def test_through_bias_add(tmp_path: Path) -> None:
    """A zero column with bias -1 is exactly 0 after Relu and goes (the bias shrinks with it); one with bias +1 is
    a constant 1 that C reads, so it stays."""
    m, bias, b2 = biased_mlp()
    assert shrink(m) == [f"p -> c: 1 of {HID} channels removed"]
    keep = [i for i in range(HID) if i != 2]
    np.testing.assert_array_equal(weights(m)["bias"], bias[keep])
    np.testing.assert_array_equal(weights(m)["b2"], b2[keep])
    _, err = compile_and_compare(biased_mlp()[0], tmp_path, fmt="csr", batches=(1, 4))
    assert err < 1e-4


def test_nm_consumer_left_alone() -> None:
    """Removing inputs of a 2:4 weight would shift its groups of 4 out of line: the pair is not shrunk."""
    rng = np.random.default_rng(3)
    b1 = weight(rng, 8, K, 0.6).T.copy()
    w2 = rng.standard_normal((N, 8)).astype(np.float32)
    w2[:, [0, 1, 4, 5]] = 0  # 2:4 along the inputs, and inputs 0, 1, 4, 5 are never read
    nodes = [helper.make_node("MatMul", ["x", "b1"], ["h"], name="p"), helper.make_node("MatMul", ["h", "b2"], ["y"])]
    m = model(nodes, {"b1": b1, "b2": w2.T.copy()}, {"x": ["batch", K]}, {"y": ["batch", N]})
    assert shrink(m) == []
    w2[:, 0] = 1.0  # the first group now has 3 nonzeros: no N:M structure, so the unread inputs 4, 5 go
    m = model(nodes, {"b1": b1, "b2": w2.T.copy()}, {"x": ["batch", K]}, {"y": ["batch", N]})
    assert shrink(m) == ["p -> y: 3 of 8 channels removed"]  # inputs 1, 4, 5
