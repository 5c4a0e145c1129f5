"""int8:1x4 (issue 16): MatMulInteger layers on x86 AVX-512 VNNI kernels that take the uint8 activation as it is
and multiply it by int8 weights in 1x4 blocks with vpdpbusd. Structural: the format, the node (uint8 X and its zero
point as inputs, no float conversion), where the format is offered. Numeric: the kernel against int64 numpy at every
density, odd shapes and batches, and whole models bit for bit against the exact integer reference (ORT's u8s8
MatMulInteger is exact only on CPUs with VNNI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from sparsec.compiler import compile_model
from sparsec.formats import get_format, integer_presets, list_presets
from sparsec.layer import Epilogue, Kernel
from sparsec.node import read_proto, sparse_protos
from sparsec.options import CompileOptions
from sparsec.targets.registry import get_target
from tests.test_integer_layers import _exact, _feeds, _save, integer_model

X86 = get_target("x86")
needs_vnni = pytest.mark.skipif(
    not X86.supports("int8:1x4"), reason="int8:1x4 kernels need AVX-512 VNNI (and a named LLVM cpu)"
)
FMT = get_format("int8:1x4")


@pytest.mark.parametrize(("n", "k"), [(5, 4), (7, 13), (16, 64), (33, 130)])
@pytest.mark.parametrize("density", [0.0, 0.01, 0.1, 0.5, 1.0])
def test_format_packs_words_and_unpacks_exactly(n: int, k: int, density: float) -> None:
    w = FMT.random(n, k, density, np.random.default_rng(n * k))
    packed = FMT.pack(w)
    assert list(packed) == ["words", "indices", "indptr", "sums"]
    assert {str(a.dtype) for a in packed.values()} == {"int32"}
    assert np.array_equal(FMT.unpack(packed, n, k), w) and np.array_equal(packed["sums"], w.sum(axis=1))
    assert packed["indices"].max(initial=0) <= k // 4  # word positions; k // 4: the shifted last block
    assert FMT.nnz_stored(packed) == 4 * len(packed["words"])


def test_format_takes_int8_integers_only() -> None:
    assert "integer weights in -128..127" in FMT.misfit(np.full((2, 8), 0.5, np.float32))
    assert "integer weights in -128..127" in FMT.misfit(np.full((2, 8), 128, np.float32))
    assert "K >= 4" in FMT.misfit(np.ones((2, 3), np.float32))
    assert FMT.misfit(np.full((2, 8), -128, np.float32)) == ""
    assert "int8:1x4" in integer_presets() and "int8:1x4" not in list_presets()  # float layers never see it


def test_int8_kernels_where_the_instruction_is() -> None:
    """x86 with VNNI; ARM with a --cpu that has dot products (tests/targets/test_arm_int8.py); every wasm build."""
    assert not get_target("arm").supports("int8:1x4") and get_target("wasm").supports("int8:1x4")
    assert X86.supports("int8:1x4") == X86.int8_kernels


@needs_vnni
@pytest.mark.parametrize(("n", "k"), [(7, 13), (33, 130), (1536, 384), (16, 3072)])
@pytest.mark.parametrize("density", [0.0, 0.01, 0.1, 0.5, 1.0])
def test_kernel_equals_int64_numpy(tmp_path: Path, n: int, k: int, density: float) -> None:
    import tvm

    rng = np.random.default_rng(n + k)
    w = FMT.random(n, k, density, rng)
    packed = FMT.pack(w)
    spec = Kernel("k", "int8:1x4", k, n, tuple(FMT.array_specs(packed)), packed=packed)
    X86.build([spec], tmp_path / "k.so")
    fn = tvm.runtime.load_module(str(tmp_path / "k.so"))["k"]
    for m in (1, 3, 64, 130):
        x = rng.integers(0, 256, (m, k)).astype(np.uint8)
        zp = np.array([rng.integers(0, 256)], np.uint8)
        y = tvm.runtime.tensor(np.full((m, n), np.nan, np.float32))
        fn(tvm.runtime.tensor(x), *(tvm.runtime.tensor(a) for a in packed.values()), tvm.runtime.tensor(zp), y)
        ref = ((x.astype(np.int64) - int(zp[0])) @ w.T.astype(np.int64)).astype(np.float32)
        np.testing.assert_array_equal(y.numpy(), ref, err_msg=f"M={m}")


@needs_vnni
@pytest.mark.parametrize(
    ("scales", "bias", "residual", "act"),
    [(1, False, False, "none"), (1, True, False, "none"), ("N", True, True, "none"), ("N", False, True, "relu"),
     (0, True, False, "none"), (1, True, False, "gelu")],
)  # fmt: skip
def test_kernel_epilogue_rounds_as_separate_mul_and_adds(
    tmp_path: Path, scales: int | str, bias: bool, residual: bool, act: str
) -> None:
    """The scale epilogue equals float32(sum) * scale, then + bias, then + residual, each rounded (numpy's order and
    ORT's), bit for bit; an activation after them as the float kernels compute it (GELU to ~3e-7)."""
    import tvm

    n, k = 40, 96
    rng = np.random.default_rng(n * k)
    w = FMT.random(n, k, 0.3, rng)
    packed = FMT.pack(w)
    s = n if scales == "N" else int(scales)
    epilogue = Epilogue(scale=s, bias=bias, residual=residual, act=act)
    spec = Kernel("k", "int8:1x4", k, n, tuple(FMT.array_specs(packed)), epilogue, packed=packed)
    X86.build([spec], tmp_path / "k.so")
    fn = tvm.runtime.load_module(str(tmp_path / "k.so"))["k"]
    scale = (rng.random(max(s, 1)) * 1e-3 + 1e-4).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    for m in (1, 3, 64, 130):
        x = rng.integers(0, 256, (m, k)).astype(np.uint8)
        zp = np.array([rng.integers(0, 256)], np.uint8)
        r = rng.standard_normal((m, n)).astype(np.float32)
        ref = ((x.astype(np.int64) - int(zp[0])) @ w.T.astype(np.int64)).astype(np.float32)
        args = [x, *packed.values(), zp]
        if s:
            ref, args = ref * (scale if s > 1 else scale[0]), [*args, scale]
        if bias:
            ref, args = ref + b, [*args, b]
        if residual:
            ref, args = ref + r, [*args, r]
        y = tvm.runtime.tensor(np.full((m, n), np.nan, np.float32))
        fn(*(tvm.runtime.tensor(a) for a in args), y)
        if act == "none":
            np.testing.assert_array_equal(y.numpy(), ref, err_msg=f"M={m}")
        else:
            expect = np.maximum(ref, 0) if act == "relu" else ref * 0.5 * (1 + _erf(ref / np.sqrt(2)))
            np.testing.assert_allclose(y.numpy(), expect, rtol=1e-5, atol=1e-6, err_msg=f"M={m}")


def _erf(x: np.ndarray) -> np.ndarray:
    import math

    return np.vectorize(math.erf)(x.astype(np.float64)).astype(np.float32)


@needs_vnni
def test_int8_node_takes_the_uint8_activation_and_equals_the_exact_sums(tmp_path: Path) -> None:
    from sparsec.runtime import InferenceSession

    model = integer_model(np.int8, density=0.3, heads=3)
    res = compile_model(_save(tmp_path, model), tmp_path / "i.sparsec", CompileOptions(format="int8:1x4"))
    assert [la["format"] for la in res.layers] == ["int8:1x4"] * 3 and res.errors == {"y": 0.0}
    m = onnx.load(str(res.artifact / "model.onnx"))
    ops = [n.op_type for n in m.graph.node]
    assert "DequantizeLinear" not in ops and "MatMulInteger" not in ops  # no float conversion in front
    assert ops.count("Mul") == 3  # only the scale products x_scale * w_scale: the kernels multiply by them
    for h, node in enumerate(sparse_protos(m)):
        inputs = list(node.input)  # uint8 X, the four arrays, its zero point, the scale
        assert inputs[0] == "xq" and inputs[5:] == ["xz", f"s{h}"] and read_proto(node).epilogue.scale == 1
    one = integer_model(np.int8, density=0.3)  # _exact computes one head
    res = compile_model(_save(tmp_path, one, "one.onnx"), tmp_path / "one.sparsec", CompileOptions(format="int8:1x4"))
    sess = InferenceSession(res.artifact)
    for seed, batch in ((31, 1), (32, 2), (33, 10)):
        feeds = _feeds(seed, batch)
        np.testing.assert_array_equal(sess.run(None, feeds)[0], _exact(one, feeds))


def _epilogue_model() -> onnx.ModelProto:
    """Two int8 layers as quantize_dynamic writes them, then what follows: y0 = Relu(acc0 * (xs * ws0[N]) + b0)
    (per-channel scale), y1 = acc1 * (xs * ws1) + b1 + r (a residual)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    k, n = 96, 80
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"])]
    inits = []
    for h, ws in enumerate((rng.random(n) * 0.02 + 0.001, np.array(0.013))):
        w = rng.integers(-127, 128, (k, n))
        w[rng.random((k, n)) >= 0.3] = 0
        inits += [
            numpy_helper.from_array(w.astype(np.int8), f"w{h}"),
            numpy_helper.from_array(np.array(0, np.int8), f"wz{h}"),
            numpy_helper.from_array(ws.astype(np.float32), f"ws{h}"),
            numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), f"b{h}"),
        ]
        nodes += [
            helper.make_node("MatMulInteger", ["xq", f"w{h}", "xz", f"wz{h}"], [f"acc{h}"]),
            helper.make_node("Cast", [f"acc{h}"], [f"accf{h}"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["xs", f"ws{h}"], [f"s{h}"]),
            helper.make_node("Mul", [f"accf{h}", f"s{h}"], [f"sc{h}"]),
            helper.make_node("Add", [f"sc{h}", f"b{h}"], [f"yb{h}"]),
        ]
    nodes += [helper.make_node("Relu", ["yb0"], ["y0"]), helper.make_node("Add", ["yb1", "r"], ["y1"], name="res")]
    graph = helper.make_graph(
        nodes,
        "epilogues",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 7, k]),
            helper.make_tensor_value_info("r", TensorProto.FLOAT, ["batch", 7, n]),
        ],
        [helper.make_tensor_value_info(f"y{h}", TensorProto.FLOAT, ["batch", 7, n]) for h in (0, 1)],
        inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@needs_vnni
def test_int8_kernels_take_the_scale_bias_and_relu_and_stay_equal_to_ort(tmp_path: Path) -> None:
    """The Mul by x_scale * w_scale (one value, or one per output), the bias and a Relu go into the int8 kernel; a
    residual stays on ORT (ORT folds it into SkipLayerNormalization, rounded another way), saying so. The outputs
    equal ORT's own int8 path on the original model bit for bit (its u8s8 MatMulInteger is exact with VNNI)."""
    import onnxruntime as ort

    from sparsec.passes.epilogue_rules import INT8_INEXACT
    from sparsec.runtime import InferenceSession
    from tests.passes.graphs import stage

    model = _epilogue_model()
    out, layers = stage(onnx.shape_inference.infer_shapes(model), "fuse", fmt="int8:1x4")
    kernels = {la.name: la.kernel for la in layers if la.kernel is not None}
    assert [k.epilogue.steps for k in kernels.values()] == [("scale", "bias", "relu"), ("scale", "bias")]
    assert [k.epilogue.scale for k in kernels.values()] == [80, 1]
    assert [n.op_type for n in out.graph.node if n.op_type in ("Mul", "Add", "Relu")] == ["Mul", "Mul", "Add"]
    ((note,),) = [la.unfused for la in layers if la.kernel is not None and la.kernel.epilogue.act == "none"]
    assert note.startswith("Add 'res': ") and note.endswith(INT8_INEXACT)

    res = compile_model(_save(tmp_path, model), tmp_path / "e.sparsec", CompileOptions(format="int8:1x4"))
    assert res.errors == {"y0": 0.0, "y1": 0.0}
    sess, orig = InferenceSession(res.artifact), ort.InferenceSession(model.SerializeToString())
    for seed, batch in ((41, 1), (42, 5), (43, 12)):
        rng = np.random.default_rng(seed)
        feeds = {
            "x": rng.standard_normal((batch, 7, 96)).astype(np.float32) * 3,
            "r": rng.standard_normal((batch, 7, 80)).astype(np.float32),
        }
        for got, want in zip(sess.run(None, feeds), orig.run(None, feeds), strict=True):
            np.testing.assert_array_equal(got, want)


@needs_vnni
def test_uint8_weights_beyond_int8_stay_on_the_float_kernels(tmp_path: Path) -> None:
    """u8u8: B - 128 spans -128..127 here, so int8:1x4 fits; a zero point of 0 leaves 0..255, which it does not."""
    model = integer_model(np.uint8, density=0.3)
    for t in model.graph.initializer:
        if t.name == "wz0":
            t.CopyFrom(onnx.numpy_helper.from_array(np.array(0, np.uint8), "wz0"))
    res = compile_model(_save(tmp_path, model), tmp_path / "u.sparsec", CompileOptions(format="int8:1x4"))
    assert res.layers[0]["format"] == "dense" and "integer weights in -128..127" in res.layers[0]["reason"]


def test_float_layers_refuse_int8_format(tmp_path: Path) -> None:
    """A float model forced to int8:1x4 keeps every layer dense, saying why (no VNNI: the format is refused)."""
    from models.synthetic import transformer_ffn
    from sparsec.errors import SparsecError

    src = tmp_path / "ffn.onnx"
    onnx.save(transformer_ffn(d=32, hidden=64, density=0.3), str(src))
    opts = CompileOptions(format="int8:1x4", verify=False)
    if not X86.supports("int8:1x4"):
        with pytest.raises(SparsecError, match="--format int8:1x4: no x86 kernel for this format"):
            compile_model(src, tmp_path / "f.sparsec", opts)
        return
    res = compile_model(src, tmp_path / "f.sparsec", opts)
    assert all(la["format"] == "dense" for la in res.layers)
    assert all("runs MatMulInteger / QLinearMatMul layers and QDQ MatMuls only" in la["reason"] for la in res.layers)


@needs_vnni
def test_tune_times_int8_kernels_on_the_uint8_activation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--tune times int8:1x4 (on uint8 inputs, checked exact first) against ORT's int8 path."""
    monkeypatch.setenv("SPARSEC_CACHE_DIR", str(tmp_path / "cache"))
    model = integer_model(np.int8, density=0.1)
    opts = CompileOptions(format="int8:1x4", tune=True, dims={"batch": 4})
    res = compile_model(_save(tmp_path, model), tmp_path / "t.sparsec", opts)
    (layer,) = res.layers
    assert set(layer["tuning"]["measured_us"]) == {"int8:1x4|vnni", "dense"} and layer["format"] == "int8:1x4"
    assert res.errors == {"y": 0.0}


@needs_vnni
def test_tune_times_int8_kernels_of_a_qdq_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--tune on a QDQ model times int8:1x4 on the MatMul's integers (checked exact first) beside the float kernels;
    the compiled model verifies."""
    from sparsec.quantize import quantize_file
    from tests.targets.arm_models import mlp

    monkeypatch.setenv("SPARSEC_CACHE_DIR", str(tmp_path / "cache"))
    onnx.save(mlp(), str(tmp_path / "f.onnx"))
    quantize_file(tmp_path / "f.onnx", tmp_path / "q.onnx", mode="qdq")
    opts = CompileOptions(tune=True, dims={"batch": 16})
    res = compile_model(tmp_path / "q.onnx", tmp_path / "q.sparsec", opts)
    measured = [set(la["tuning"]["measured_us"]) for la in res.layers if la.get("tuning")]
    assert measured and all("int8:1x4|vnni" in m and "dense" in m for m in measured), measured
    assert max(res.errors.values()) <= 1e-4
