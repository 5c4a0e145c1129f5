"""Dense QLinearMatMul / QLinearConv with an int8 activation run on ORT's float32 MatMul / Conv on x86, exactly
(passes/float_qlinear.py): ORT's own int8-activation kernels there are 3-5x slower than its float32 ones. The
compiled model's outputs are ORT's bytes; uint8 activations, sums beyond float32's exact integers, activation x
activation products with a large K and other targets keep ORT's node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sparsec.compiler import compile_model
from sparsec.options import CompileOptions
from tests.test_qlinear_layers import _feeds, _ort, _save, qlinear_conv_model, qlinear_model


def _ops(res_artifact: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(res_artifact / "model.onnx")).graph.node]


def _same_as_ort(model: onnx.ModelProto, artifact: Path, feeds_list: list[dict[str, np.ndarray]]) -> None:
    from sparsec.runtime import InferenceSession

    sess = InferenceSession(artifact)
    for feeds in feeds_list:
        got, want = sess.run(None, feeds), _ort(model, feeds)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype and np.unique(w).size > 5
            np.testing.assert_array_equal(g, w)


def attention_model(k: int = 16, act: type = np.int8) -> onnx.ModelProto:
    """Two quantized activations [B, 4, 7, k] x [B, 4, k, 7] through QLinearMatMul (no weight: never a layer)."""
    zp = -3 if act is np.int8 else 5
    t = TensorProto.INT8 if act is np.int8 else TensorProto.UINT8
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("as", 0.05), ("bs", 0.04), ("ys", 0.3))]
    inits += [numpy_helper.from_array(np.array(v, act), n) for n, v in (("az", zp), ("bz", zp + 1), ("yz", zp + 2))]
    nodes = [
        helper.make_node("QuantizeLinear", ["a", "as", "az"], ["aq"]),
        helper.make_node("QuantizeLinear", ["b", "bs", "bz"], ["bq"]),
        helper.make_node("QLinearMatMul", ["aq", "as", "az", "bq", "bs", "bz", "ys", "yz"], ["y"], name="scores"),
    ]
    graph = helper.make_graph(
        nodes,
        "attention",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 4, 7, k]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 4, k, 7]),
        ],
        [helper.make_tensor_value_info("y", t, ["batch", 4, 7, 7])],
        inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _pair_feeds(seed: int, k: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: (rng.standard_normal((2, 4, *s)) * 3).astype(np.float32) for n, s in (("a", (7, k)), ("b", (k, 7)))}


def test_dense_int8_activation_layer_runs_on_float_matmul(tmp_path: Path) -> None:
    model = qlinear_model(np.int8, heads=2, wmax=127, density=0.6)
    res = compile_model(_save(tmp_path, model), tmp_path / "d.sparsec", CompileOptions(format="dense"))
    assert all("runs exactly on ORT's float32 MatMul" in la["reason"] for la in res.layers), res.layers
    ops = _ops(res.artifact)
    assert "QLinearMatMul" not in ops and ops.count("MatMul") == 2 and ops.count("Cast") == 1  # one shared conversion
    assert res.errors == {"y0": 0.0, "y1": 0.0}
    _same_as_ort(model, res.artifact, [_feeds(s, b) for s, b in ((1, 1), (2, 4))])


def test_attention_product_runs_on_float_matmul(tmp_path: Path) -> None:
    model = attention_model()
    res = compile_model(_save(tmp_path, model), tmp_path / "p.sparsec", CompileOptions())
    ops = _ops(res.artifact)
    assert "QLinearMatMul" not in ops and ops.count("MatMul") == 1 and res.errors == {"y": 0.0}
    _same_as_ort(model, res.artifact, [_pair_feeds(3), _pair_feeds(4)])


@pytest.mark.parametrize(
    ("model", "why"),
    [
        (attention_model(k=300), "300 * 255 * 255 > 2**24: float32 sums could round"),
        (attention_model(act=np.uint8), "uint8 activations: ORT's u8 kernels are the fast ones"),
    ],
)
def test_products_ort_runs_better_or_exactly_keep_its_node(tmp_path: Path, model: onnx.ModelProto, why: str) -> None:
    res = compile_model(_save(tmp_path, model), tmp_path / "k.sparsec", CompileOptions())
    assert "QLinearMatMul" in _ops(res.artifact), why


def test_uint8_activation_layers_keep_orts_kernel(tmp_path: Path) -> None:
    """ORT's uint8-activation kernels are its fast ones: a dense u8 layer stays as it is."""
    model = qlinear_model(np.uint8, heads=2, wmax=127, density=0.6)
    res = compile_model(_save(tmp_path, model), tmp_path / "u.sparsec", CompileOptions(format="dense"))
    assert not any("float32" in la["reason"] for la in res.layers)
    assert _ops(res.artifact).count("QLinearMatMul") == 2


def test_inexact_layers_keep_orts_kernel(tmp_path: Path) -> None:
    """A layer whose int8 sums can pass 2**24 (here its int32 bias) is not float_exact: ORT's kernel keeps it exact."""
    model = qlinear_conv_model(np.int8, density=0.9)
    bias = next(t for t in model.graph.initializer if t.name == "b")
    bias.CopyFrom(numpy_helper.from_array(np.full(24, 2**24, np.int32), "b"))
    res = compile_model(_save(tmp_path, model), tmp_path / "i.sparsec", CompileOptions())
    assert "2**24" in res.layers[0]["reason"] and "QLinearConv" in _ops(res.artifact)


def test_dense_int8_activation_qlinearconv_runs_on_float_conv(tmp_path: Path) -> None:
    model = qlinear_conv_model(np.int8, density=0.9)
    res = compile_model(_save(tmp_path, model), tmp_path / "c.sparsec", CompileOptions(format="dense"))
    assert "runs exactly on ORT's float32 Conv" in res.layers[0]["reason"]
    ops = _ops(res.artifact)
    assert "QLinearConv" not in ops and "Conv" in ops and res.errors == {"y": 0.0}
    feeds = [{"x": np.random.default_rng(s).standard_normal((1, 16, 10, 10)).astype(np.float32)} for s in (1, 2)]
    _same_as_ort(model, res.artifact, feeds)


@pytest.mark.parametrize("which", ["layers", "product"])
def test_other_targets_keep_orts_kernel(tmp_path: Path, which: str) -> None:
    """ARM's MLAS has int8-activation dot-product kernels: dense s8 layers and products stay ORT's there."""
    model = qlinear_model(np.int8, heads=2, wmax=127, density=0.6) if which == "layers" else attention_model()
    opts = CompileOptions(target="arm", format="dense", verify=False)
    res = compile_model(_save(tmp_path, model), tmp_path / "a.sparsec", opts)
    assert _ops(res.artifact).count("QLinearMatMul") == (2 if which == "layers" else 1)


def test_auto_ranks_a_floated_layer_at_float32_speed(tmp_path: Path) -> None:
    """The cost model prices a dense s8 layer at ORT's float32 MatMul (where it runs), not its s8s8 kernel's 3x: at
    90% density nothing sparse beats that (passes/choose.floats_dense)."""
    model = qlinear_model(np.int8, heads=2, wmax=127, density=0.9)
    res = compile_model(_save(tmp_path, model), tmp_path / "f.sparsec", CompileOptions(dims={"batch": 64}))
    assert [la["format"] for la in res.layers] == ["dense", "dense"], res.layers
    assert "QLinearMatMul" not in _ops(res.artifact) and res.errors == {"y0": 0.0, "y1": 0.0}


def test_tune_times_a_floated_layer_on_float32(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--tune times dense where it will run: ORT's float32 MatMul for an s8 layer, ORT's own kernel for a u8 one."""
    from sparsec.passes import tune

    seen: list[bool] = []
    real = tune._measure

    def measure(*args: Any) -> dict[str, float]:
        seen.append(args[-1])
        return real(*args)

    monkeypatch.setattr(tune, "_measure", measure)
    monkeypatch.setenv("SPARSEC_CACHE_DIR", str(tmp_path / "cache"))  # measured, not served from the cache
    for act in (np.int8, np.uint8):
        model = qlinear_model(act, heads=1, wmax=127, density=0.2)
        compile_model(_save(tmp_path, model, f"{act.__name__}.onnx"), tmp_path / f"{act.__name__}.sparsec",
                      CompileOptions(tune=True))  # fmt: skip
    assert seen == [True, False]


@pytest.mark.parametrize("fmt", ["auto", "dense", "int8:1x4"])
def test_run_time_zero_point_is_kept(tmp_path: Path, fmt: str) -> None:
    """An int8 activation whose zero point is a graph input (not a constant) is neither floated nor shifted to uint8
    (both need the value at compile time): the outputs stay ORT's."""
    from sparsec.runtime import InferenceSession

    model = qlinear_model(np.int8, heads=2, wmax=127, density=0.2)
    xz = next(t for t in model.graph.initializer if t.name == "xz")
    model.graph.initializer.remove(xz)
    model.graph.input.append(helper.make_tensor_value_info("xz", TensorProto.INT8, []))
    res = compile_model(_save(tmp_path, model), tmp_path / "z.sparsec", CompileOptions(format=fmt, verify=False))
    assert not any("float32" in la["reason"] or la["format"] == "int8:1x4" for la in res.layers), res.layers
    for seed, zp in ((1, -5), (2, 9)):
        feeds = {**_feeds(seed, 2), "xz": np.array(zp, np.int8)}
        got = InferenceSession(res.artifact).run(None, feeds)
        for g, w in zip(got, _ort(model, feeds), strict=True):
            np.testing.assert_array_equal(g, w)


def _pointwise_conv(seed: int = 0, c: int = 48, n: int = 288, hw: int = 24) -> onnx.ModelProto:
    """x -> QuantizeLinear (int8) -> one 1x1 QLinearConv with per-channel scales and an int32 bias (MobileNet-v2's
    expansion shape)."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, (n, c, 1, 1)).astype(np.int8)
    inits = [
        numpy_helper.from_array(np.array(0.023, np.float32), "xs"),
        numpy_helper.from_array(np.array(-3, np.int8), "xz"),
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array((rng.random(n) * 0.004 + 0.001).astype(np.float32), "ws"),
        numpy_helper.from_array(np.zeros(n, np.int8), "wz"),
        numpy_helper.from_array(np.array(0.071, np.float32), "ys"),
        numpy_helper.from_array(np.array(2, np.int8), "yz"),
        numpy_helper.from_array(rng.integers(-3000, 3000, n).astype(np.int32), "b"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], name="pw"),
    ]
    graph = helper.make_graph(
        nodes,
        "pointwise",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", c, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.INT8, ["batch", n, hw, hw])],
        inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_floated_conv_is_not_fused_with_its_requantization(tmp_path: Path) -> None:
    """ORT folds a Conv -> Mul(y, constant) into the Conv's weights, which rounds the sum another way: the
    requantization's Mul takes the scale first (passes/qlinear.py) and the floated conv stays ORT's bytes."""
    model = _pointwise_conv()
    res = compile_model(_save(tmp_path, model), tmp_path / "pw.sparsec", CompileOptions(format="dense"))
    assert "runs exactly on ORT's float32 Conv" in res.layers[0]["reason"] and res.errors == {"y": 0.0}
    rng = np.random.default_rng(7)
    feeds = [{"x": (rng.standard_normal((2, 48, 24, 24)) * 2).astype(np.float32)} for _ in range(3)]
    _same_as_ort(model, res.artifact, feeds)


def test_reference_of_a_qlinearconv_is_exact() -> None:
    """--verify's exact reference computes a QLinearConv compiled sparse as a float32 Conv then the scale Mul; with
    the scale as the Mul's second input ORT folds it into the Conv's weights and the reference moves a quantization
    step off ORT's (exact) QLinearConv, failing compiles whose kernels are right (seen on a MobileNet-v2)."""
    import onnxruntime as ort

    from sparsec.integer_reference import exact_reference

    model = _pointwise_conv(seed=1)
    ref = ort.InferenceSession(
        exact_reference(model, {"w": "pw"}).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(8)
    for _ in range(6):  # the old order flipped an output in 2 of 4 such batches
        feeds = {"x": (rng.standard_normal((2, 48, 24, 24)) * 2).astype(np.float32)}
        np.testing.assert_array_equal(ref.run(None, feeds)[0], _ort(model, feeds)[0])
