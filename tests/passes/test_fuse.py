"""fuse: bias / residual / activation epilogues go into the sparsec node (structure), with ORT's numbers (numeric)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from sparsec.layer import Epilogue, Layer
from tests.passes.graphs import K, N, compile_and_compare, const, model, ops, stage, weight

RNG = np.random.default_rng(7)
W = weight(RNG, density=0.3)
B = RNG.standard_normal(N).astype(np.float32)


def build(
    tail: list[onnx.NodeProto], outputs: dict[str, list[int | str]], opset: int = 17, k: int = K
) -> onnx.ModelProto:
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"], name="fc")] + tail
    inputs: dict[str, list[int | str]] = {"x": ["batch", k], "r": ["batch", N]}
    return model(nodes, {"w": W.T.copy(), "b": B}, inputs, outputs, opset)


def fused_layer(m: onnx.ModelProto) -> tuple[onnx.ModelProto, Layer]:
    """The model after ``fuse`` (layer fc forced to csr) and fc's record."""
    out, layers = stage(onnx.shape_inference.infer_shapes(m), "fuse")
    onnx.checker.check_model(out)
    return out, next(la for la in layers if la.name == "fc")


def fused(m: onnx.ModelProto) -> tuple[onnx.ModelProto, Epilogue]:
    out, layer = fused_layer(m)
    assert layer.kernel is not None
    return out, layer.kernel.epilogue


def erf_gelu(y: str, out: str, form: str) -> list[onnx.NodeProto]:
    """GELU the way exporters write it; ``form`` picks where the 0.5 goes."""
    nodes = [
        const("sqrt2", math.sqrt(2.0)),
        const("one", 1.0),
        const("half", 0.5),
        helper.make_node("Div", [y, "sqrt2"], ["g_d"]),
        helper.make_node("Erf", ["g_d"], ["g_e"]),
        helper.make_node("Add", ["g_e", "one"], ["g_a"]),
    ]
    if form == "pytorch":  # (y * a) * 0.5
        nodes += [helper.make_node("Mul", [y, "g_a"], ["g_m"]), helper.make_node("Mul", ["g_m", "half"], [out])]
    elif form == "half_first":  # (y * 0.5) * a
        nodes += [helper.make_node("Mul", ["half", y], ["g_h"]), helper.make_node("Mul", ["g_h", "g_a"], [out])]
    else:  # y * (a * 0.5)
        nodes += [helper.make_node("Mul", ["g_a", "half"], ["g_h"]), helper.make_node("Mul", [y, "g_h"], [out])]
    return nodes


OUT = {"y": ["batch", N]}
CASES = {
    "bias_first_operand+relu": (
        [helper.make_node("Add", ["b", "mm"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        dict(bias=True, act="relu"),
    ),
    "const_bias+residual+sigmoid": (
        [
            const("cb", np.full((1, N), 0.25)),
            helper.make_node("Add", ["mm", "cb"], ["h"]),
            helper.make_node("Add", ["r", "h"], ["h2"]),
            helper.make_node("Sigmoid", ["h2"], ["y"]),
        ],
        dict(bias=True, residual=True, act="sigmoid"),
    ),
    "two_biases_summed": (
        [
            helper.make_node("Add", ["mm", "b"], ["h"]),
            const("one_b", 1.0),
            helper.make_node("Add", ["h", "one_b"], ["y"]),
        ],
        dict(bias=True),
    ),
    "relu6_clip": (
        [const("lo", 0.0), const("hi", 6.0), helper.make_node("Clip", ["mm", "lo", "hi"], ["y"])],
        dict(act="clip", clip_min=0.0, clip_max=6.0),
    ),
    "clip_max_only": (
        [const("hi", 0.5), helper.make_node("Clip", ["mm", "", "hi"], ["y"])],
        dict(act="clip", clip_max=0.5),
    ),
    **{
        f"bias+gelu_{form}": (
            [helper.make_node("Add", ["mm", "b"], ["h"])] + erf_gelu("h", "y", form),
            dict(bias=True, act="gelu"),
        )
        for form in ("pytorch", "half_first", "half_inside")
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fusion_structure_and_numbers(case: str, tmp_path: Path) -> None:
    tail, expect = CASES[case]
    m = build(tail, OUT)
    rewritten, info = fused(m)
    assert ops(rewritten) == ["EPContext"], ops(rewritten)
    for key, value in expect.items():
        assert getattr(info, key) == value, (key, info)
    node = rewritten.graph.node[0]
    n_inputs = 1 + 3 + int(info.bias) + int(info.residual)
    assert len(node.input) == n_inputs and (not info.residual or node.input[-1] == "r")
    _, err = compile_and_compare(m, tmp_path)
    assert err < 1e-4


def test_gelu_opset20() -> None:
    m = build([helper.make_node("Gelu", ["mm"], ["y"])], OUT, opset=20)
    rewritten, info = fused(m)
    assert info.act == "gelu" and ops(rewritten) == ["EPContext"]
    tanh = build([helper.make_node("Gelu", ["mm"], ["y"], approximate="tanh")], OUT, opset=20)
    _, info = fused(tanh)
    assert info.act == "none"  # the tanh approximation is another function: left to ORT


def test_nothing_fused_after_activation_or_through_shared_values() -> None:
    after_act = [helper.make_node("Relu", ["mm"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])]
    rewritten, info = fused(build(after_act, OUT))
    assert (info.act, info.bias) == ("relu", False) and ops(rewritten) == ["EPContext", "Add"]

    shared = [helper.make_node("Add", ["mm", "b"], ["h"]), helper.make_node("Relu", ["h"], ["y"])]
    rewritten, info = fused(build(shared, {"y": ["batch", N], "h": ["batch", N]}))  # h is also a graph output
    assert (info.bias, info.act) == (True, "none") and ops(rewritten) == ["EPContext", "Relu"]

    two_users = [helper.make_node("Relu", ["mm"], ["y"]), helper.make_node("Sigmoid", ["mm"], ["z"])]
    rewritten, info = fused(build(two_users, {"y": ["batch", N], "z": ["batch", N]}))
    assert info.act == "none" and sorted(ops(rewritten)) == ["EPContext", "Relu", "Sigmoid"]


def test_residual_needs_exactly_the_output_shape() -> None:
    broadcast = [helper.make_node("Add", ["mm", "rb"], ["y"], name="add_rb")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"], name="fc")] + broadcast
    m = model(nodes, {"w": W.T.copy()}, {"x": ["batch", K], "rb": [1, N]}, OUT)
    rewritten, layer = fused_layer(m)
    assert layer.kernel is not None and not layer.kernel.epilogue.residual and ops(rewritten) == ["EPContext", "Add"]
    # inspect says why: the Add is neither a bias (not a constant) nor a residual (another shape)
    assert len(layer.unfused) == 1 and layer.unfused[0].startswith("Add 'add_rb': "), layer.unfused
    assert "not a constant" in layer.unfused[0] and "not a residual: shape [1, 29]" in layer.unfused[0]


def test_fusion_notes_name_shared_outputs_and_clear_fused_nodes() -> None:
    shared = [helper.make_node("Add", ["mm", "b"], ["h"]), helper.make_node("Relu", ["h"], ["y"])]
    _, layer = fused_layer(build(shared, {"y": ["batch", N], "h": ["batch", N]}))
    assert layer.unfused == ("its output is a graph output: nothing after it is fused",), layer.unfused
    two = [helper.make_node("Relu", ["mm"], ["y"]), helper.make_node("Sigmoid", ["mm"], ["z"])]
    _, layer = fused_layer(build(two, {"y": ["batch", N], "z": ["batch", N]}))
    assert layer.unfused == ("its output feeds 2 nodes (Relu, Sigmoid): only a single consumer is fused",)
    _, layer = fused_layer(build(CASES["const_bias+residual+sigmoid"][0], OUT))
    assert layer.unfused == () and layer.to_json()["epilogue"] == ["bias", "residual", "sigmoid"]


def test_not_erf_gelu_when_constants_differ() -> None:
    tail = erf_gelu("mm", "y", "pytorch")
    tail[0] = const("sqrt2", 1.5)
    rewritten, info = fused(build(tail, OUT))
    assert info.act == "none" and "Erf" in ops(rewritten)
