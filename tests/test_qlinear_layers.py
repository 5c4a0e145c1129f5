"""QLinearMatMul / QLinearConv layers (onnxruntime.quantization's QOperator format): compiled on the exact integer
kernels and requantized as ORT does (passes/qlinear.py), so the compiled model's int8/uint8 outputs are ORT's bytes.

Weights are kept within [-63, 63] where ORT is the yardstick: then no pair of uint8 x int8 products overflows int16,
and ORT's u8s8 kernels are exact on CPUs without VNNI too (they saturate such pairs there, passes/integer.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sparsec.compiler import compile_model
from sparsec.node import sparse_protos
from sparsec.options import CompileOptions
from tests.targets.arm_models import needs_qemu
from tests.targets.wasm_helpers import needs_wasm
from tests.test_int8_kernels import needs_vnni
from tests.test_integer_layers import K, N, _feeds, _save  # the same 96 x 80 weights and inputs

TYPES = {np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8}


def qlinear_model(
    act: type = np.uint8, per_channel: bool = True, density: float = 0.1, heads: int = 1, wmax: int = 63, seed: int = 0
) -> onnx.ModelProto:
    """x (float) -> QuantizeLinear -> ``heads`` QLinearMatMul with sparse constant int8 weights (nonzero zero points
    for the activation and the output, per-channel or per-tensor weight scales) -> their quantized outputs y0, y1..."""
    rng = np.random.default_rng(seed)
    xz = 7 if act is np.uint8 else -5
    inits = [
        numpy_helper.from_array(np.array(0.031, np.float32), "xs"),
        numpy_helper.from_array(np.array(xz, act), "xz"),
    ]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"])]
    outs = []
    for h in range(heads):
        w = rng.integers(-wmax, wmax + 1, (K, N))
        w[rng.random((K, N)) >= density] = 0
        ws = (rng.random(N) * 0.01 + 0.001) if per_channel else np.array(0.004)
        inits += [
            numpy_helper.from_array(w.astype(np.int8), f"w{h}"),
            numpy_helper.from_array(ws.astype(np.float32), f"ws{h}"),
            numpy_helper.from_array(np.zeros(ws.shape, np.int8), f"wz{h}"),
            numpy_helper.from_array(np.array(0.05 * (h + 1), np.float32), f"ys{h}"),
            numpy_helper.from_array(np.array(xz + 3, act), f"yz{h}"),
        ]
        ins = ["xq", "xs", "xz", f"w{h}", f"ws{h}", f"wz{h}", f"ys{h}", f"yz{h}"]
        nodes.append(helper.make_node("QLinearMatMul", ins, [f"y{h}"], name=f"qmm{h}"))
        outs.append(helper.make_tensor_value_info(f"y{h}", TYPES[act], ["batch", 7, N]))
    graph = helper.make_graph(
        nodes, "qlinear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 7, K])], outs, inits
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def qlinear_conv_model(act: type = np.uint8, density: float = 0.2, seed: int = 0) -> onnx.ModelProto:
    """x -> QuantizeLinear -> QLinearConv 3x3 (16 -> 24 channels, pads 1, int32 bias, per-channel) on 10x10."""
    rng = np.random.default_rng(seed)
    c, n = 16, 24
    w = rng.integers(-63, 64, (n, c, 3, 3))
    w[rng.random(w.shape) >= density] = 0
    xz = 9 if act is np.uint8 else -3
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
        numpy_helper.from_array(np.array(xz, act), "xz"),
        numpy_helper.from_array(w.astype(np.int8), "w"),
        numpy_helper.from_array((rng.random(n) * 0.01 + 0.002).astype(np.float32), "ws"),
        numpy_helper.from_array(np.zeros(n, np.int8), "wz"),
        numpy_helper.from_array(np.array(0.04, np.float32), "ys"),
        numpy_helper.from_array(np.array(xz + 2, act), "yz"),
        numpy_helper.from_array(rng.integers(-2000, 2000, n).astype(np.int32), "b"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node(
            "QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], pads=[1, 1, 1, 1], name="qc"
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "qconv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 10, 10])],
        [helper.make_tensor_value_info("y", TYPES[act], [1, n, 10, 10])],
        inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _requantized(model: onnx.ModelProto, feeds: dict[str, np.ndarray], head: int = 0) -> np.ndarray:
    """numpy: QLinearMatMul ``head`` as ORT defines it, with int64 (exact) sums: float32(sum) * float32(x_scale *
    w_scale / y_scale), rounded to nearest even, plus y_zero_point, saturated."""
    v = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    xq = _ort(_quantizer(model), feeds)[0]
    acc = (xq.astype(np.int64) - int(v["xz"])) @ v[f"w{head}"].astype(np.int64)
    s = (v["xs"] * v[f"ws{head}"]) / v[f"ys{head}"]
    y = np.rint(acc.astype(np.float32) * s) + int(v[f"yz{head}"])
    info = np.iinfo(v[f"yz{head}"].dtype)
    return np.clip(y, info.min, info.max).astype(v[f"yz{head}"].dtype)


def _quantizer(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model's QuantizeLinear alone (ORT's own rounding of the activation)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.node[1:]
    del m.graph.output[:]
    xz = next(t for t in m.graph.initializer if t.name == "xz")
    m.graph.output.append(helper.make_tensor_value_info("xq", xz.data_type, None))
    return m


def test_qlinearmatmul_becomes_a_sparse_node_then_its_requantization(tmp_path: Path) -> None:
    res = compile_model(_save(tmp_path, qlinear_model(heads=2)), tmp_path / "a.sparsec", CompileOptions(format="csr"))
    assert [la["format"] for la in res.layers] == ["csr"] * 2
    assert {la["op"] for la in res.layers} == {"QLinearMatMul"} and {la["weight_dtype"] for la in res.layers} == {
        "int8"
    }
    m = onnx.load(str(res.artifact / "model.onnx"))
    ops = [n.op_type for n in m.graph.node]
    assert "QLinearMatMul" not in ops and len(sparse_protos(m)) == 2
    assert ops.count("DequantizeLinear") == 1  # both layers read one float32 conversion of the activation
    assert ops.count("Mul") == 2 and ops.count("QuantizeLinear") == 3  # the model's own + one per layer
    assert res.errors == {"y0": 0.0, "y1": 0.0} and res.checked.startswith("2/2 sparse layers checked")
    manifest = json.loads((res.artifact / "manifest.json").read_text())
    assert [la["weight_dtype"] for la in manifest["layers"]] == ["int8"] * 2


@pytest.mark.parametrize("act", [np.uint8, np.int8])
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("fmt", ["csr", "bsr:4x1"])
def test_qlinearmatmul_outputs_are_orts_bytes(tmp_path: Path, act: type, per_channel: bool, fmt: str) -> None:
    from sparsec.runtime import InferenceSession

    model = qlinear_model(act, per_channel, density=0.3, heads=2)
    res = compile_model(_save(tmp_path, model), tmp_path / "s.sparsec", CompileOptions(format=fmt))
    assert all(la["format"] == fmt for la in res.layers) and set(res.errors.values()) == {0.0}
    sess = InferenceSession(res.artifact)
    for seed, batch in ((21, 1), (22, 2), (23, 5)):
        feeds = _feeds(seed, batch)
        got, want = sess.run(None, feeds), _ort(model, feeds)
        assert got[0].dtype == act
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
        assert 0 < np.unique(got[0]).size  # not a constant output
        np.testing.assert_array_equal(got[1], _requantized(model, feeds, head=1))


def test_full_range_weights_equal_the_exact_requantized_sums(tmp_path: Path) -> None:
    """Full-range int8 weights (ORT's u8s8 kernel saturates without VNNI): against int64 numpy, requantized as ORT."""
    from sparsec.runtime import InferenceSession

    model = qlinear_model(np.uint8, density=0.5, wmax=127)
    res = compile_model(_save(tmp_path, model), tmp_path / "f.sparsec", CompileOptions(format="csr"))
    sess = InferenceSession(res.artifact)
    for seed in (1, 2):
        feeds = _feeds(seed)
        np.testing.assert_array_equal(sess.run(None, feeds)[0], _requantized(model, feeds))


@needs_vnni
def test_uint8_qlinearmatmul_runs_int8_kernels_with_the_scale_fused(tmp_path: Path) -> None:
    from sparsec.runtime import InferenceSession

    model = qlinear_model(np.uint8, density=0.2, heads=2, wmax=127)
    res = compile_model(_save(tmp_path, model), tmp_path / "i.sparsec", CompileOptions(format="int8:1x4"))
    assert [la["format"] for la in res.layers] == ["int8:1x4"] * 2
    assert all(la["epilogue"][:1] == ["scale"] for la in res.layers), [la["epilogue"] for la in res.layers]
    m = onnx.load(str(res.artifact / "model.onnx"))
    ops = [n.op_type for n in m.graph.node]
    assert "Mul" not in ops and "DequantizeLinear" not in ops  # the scale is in the kernel, X read as uint8
    sess = InferenceSession(res.artifact)
    for seed, batch in ((3, 1), (4, 4)):
        feeds = _feeds(seed, batch)
        got = sess.run(None, feeds)
        np.testing.assert_array_equal(got[0], _requantized(model, feeds, 0))
        np.testing.assert_array_equal(got[1], _ort(model, feeds)[1])  # VNNI: ORT's u8s8 kernel is exact


@pytest.mark.parametrize("per_channel", [True, False])
def test_int8_activation_runs_int8_kernels_shifted_to_uint8(tmp_path: Path, per_channel: bool) -> None:
    """An int8 activation goes to the int8:1x4 kernel as x + 128 (one shared shift, DequantizeLinear then
    QuantizeLinear), its zero point + 128 beside it: ORT's bytes."""
    from sparsec.runtime import InferenceSession

    model = qlinear_model(np.int8, per_channel=per_channel, heads=2, wmax=127)
    res = compile_model(_save(tmp_path, model), tmp_path / "s.sparsec", CompileOptions(format="int8:1x4"))
    assert [la["format"] for la in res.layers] == ["int8:1x4"] * 2 and res.errors == {"y0": 0.0, "y1": 0.0}
    art = onnx.load(str(res.artifact / "model.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in art.graph.initializer}
    uint8 = {name for name, v in inits.items() if v.dtype == np.uint8}
    shifts = [n for n in art.graph.node if n.op_type == "QuantizeLinear" and n.input[2] in uint8]
    assert len(shifts) == 1  # shared by both layers
    sparse = sparse_protos(art)
    assert all(n.input[0] == shifts[0].output[0] for n in sparse)
    zps = [int(inits[i]) for n in sparse for i in n.input if i in inits and inits[i].dtype == np.uint8]
    assert zps == [-5 + 128] * 2  # qlinear_model's int8 zero point, shifted as the activation
    for feeds in (_feeds(1, 1), _feeds(2, 5)):
        np.testing.assert_array_equal(InferenceSession(res.artifact).run(None, feeds), _ort(model, feeds))


@pytest.mark.parametrize("act", [np.uint8, np.int8])
def test_qlinearconv_with_bias_outputs_are_orts_bytes(tmp_path: Path, act: type) -> None:
    from sparsec.runtime import InferenceSession

    model = qlinear_conv_model(act)
    res = compile_model(_save(tmp_path, model), tmp_path / "c.sparsec", CompileOptions(format="csr"))
    assert [(la["op"], la["format"]) for la in res.layers] == [("QLinearConv", "csr")]
    assert res.errors == {"y": 0.0}
    m = onnx.load(str(res.artifact / "model.onnx"))
    assert "QLinearConv" not in {n.op_type for n in m.graph.node}
    assert sparse_protos(m)[0].input[-1].endswith("__bias")  # the int32 bias, added in the kernel
    sess = InferenceSession(res.artifact)
    for seed in (5, 6):
        feeds = {"x": np.random.default_rng(seed).standard_normal((1, 16, 10, 10)).astype(np.float32)}
        got = sess.run(None, feeds)[0]
        assert got.dtype == act and np.unique(got).size > 10
        np.testing.assert_array_equal(got, _ort(model, feeds)[0])


def test_layers_whose_scales_are_not_constant_stay_on_ort(tmp_path: Path) -> None:
    from sparsec.inspect import inspect_model

    model = qlinear_model()
    ys = next(t for t in model.graph.initializer if t.name == "ys0")
    model.graph.initializer.remove(ys)
    model.graph.input.append(helper.make_tensor_value_info("ys0", TensorProto.FLOAT, []))
    rec = inspect_model(_save(tmp_path, model))["weights"][0]
    assert rec["format"] == "dense" and "y_scale is not a constant float32" in rec["reason"], rec["reason"]


def test_dense_format_keeps_the_qlinear_nodes(tmp_path: Path) -> None:
    model = qlinear_model()
    res = compile_model(_save(tmp_path, model), tmp_path / "d.sparsec", CompileOptions(format="dense"))
    assert [n.op_type for n in onnx.load(str(res.artifact / "model.onnx")).graph.node] == [
        "QuantizeLinear",
        "QLinearMatMul",
    ]


def test_exact_reference_requantizes_as_ort() -> None:
    from sparsec.integer_reference import exact_reference, integer_output_name, scaled_output_name

    model = qlinear_model(np.int8, density=0.4)
    ref = exact_reference(model, {"w0": "layer"})
    assert "QLinearMatMul" not in {n.op_type for n in ref.graph.node}
    names = {o for n in ref.graph.node for o in n.output}
    assert {integer_output_name("layer"), scaled_output_name("layer")} <= names  # per-layer taps
    feeds = _feeds(8)
    np.testing.assert_array_equal(_ort(ref, feeds)[0], _ort(model, feeds)[0])


def test_prune_a_qoperator_model_zeroes_weights_to_their_zero_point(tmp_path: Path) -> None:
    from sparsec.prune import parse_pattern, prune_model

    model = qlinear_model(density=1.0, heads=2)
    pruned, stats = prune_model(model, parse_pattern("unstructured:0.8"))
    assert [s["op"] for s in stats] == ["QLinearMatMul"] * 2
    assert all(abs(s["density_after"] - 0.2) < 0.02 for s in stats)
    res = compile_model(_save(tmp_path, pruned), tmp_path / "p.sparsec", CompileOptions(format="csr"))
    assert [la["format"] for la in res.layers] == ["csr"] * 2 and set(res.errors.values()) == {0.0}


@pytest.mark.parametrize("target", [pytest.param("wasm", marks=needs_wasm), pytest.param("arm", marks=needs_qemu)])
def test_qlinear_layers_on_other_cpu_targets(tmp_path: Path, target: str) -> None:
    from sparsec.targets.registry import get_target

    model = qlinear_model(np.int8, heads=2)
    res = compile_model(
        _save(tmp_path, model), tmp_path / f"{target}.sparsec", CompileOptions(target=target, format="csr")
    )
    assert [la["format"] for la in res.layers] == ["csr"] * 2 and set(res.errors.values()) == {0.0}
    feeds = _feeds(31, 2)
    got = get_target(target).run_artifact(res.artifact, feeds)
    for g, w in zip(got, _ort(model, feeds), strict=True):
        np.testing.assert_array_equal(g, w)


def _order_sensitive_scales() -> tuple[np.ndarray, int]:
    """Scales (x, w, y) and a sum where ``x * w / y`` (ORT's order) and ``x * (w / y)`` requantize differently."""
    rng = np.random.default_rng(0)
    acc = np.arange(1, 128, dtype=np.float32)[:, None]
    while True:
        x, w, y = (rng.uniform(0.001, 0.1, 4096).astype(np.float32) for _ in range(3))
        ours, other = (x * w) / y, x * (w / y)
        flips = np.argwhere(np.rint(acc * ours) != np.rint(acc * other))
        if flips.size:
            a, i = flips[0]
            return np.array([x[i], w[i], y[i]], np.float32), int(acc[a, 0])


def test_requantization_scale_is_computed_in_orts_order(tmp_path: Path) -> None:
    """A 1x1 layer fed one sum where the order of the scale's float32 operations changes the rounded output."""
    from sparsec.runtime import InferenceSession

    (xs, ws, ys), acc = _order_sensitive_scales()
    inits = [
        numpy_helper.from_array(np.array(xs, np.float32), "xs"),
        numpy_helper.from_array(np.array(0, np.uint8), "xz"),
        numpy_helper.from_array(np.ones((1, 1), np.int8), "w"),
        numpy_helper.from_array(np.array(ws, np.float32), "ws"),
        numpy_helper.from_array(np.array(0, np.int8), "wz"),
        numpy_helper.from_array(np.array(ys, np.float32), "ys"),
        numpy_helper.from_array(np.array(0, np.uint8), "yz"),
    ]
    node = helper.make_node("QLinearMatMul", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])
    graph = helper.make_graph(
        [node],
        "order",
        [helper.make_tensor_value_info("xq", TensorProto.UINT8, [128, 1])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [128, 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    res = compile_model(_save(tmp_path, model), tmp_path / "o.sparsec", CompileOptions(format="csr"))
    assert res.layers[0]["format"] == "csr"
    feeds = {"xq": np.arange(128, dtype=np.uint8).reshape(128, 1)}
    got, want = InferenceSession(res.artifact).run(None, feeds)[0], _ort(model, feeds)[0]
    np.testing.assert_array_equal(got, want)
    other = np.rint(np.float32(acc) * (xs * (ws / ys)))
    assert want[acc, 0] != other  # the test can tell the two orders apart
