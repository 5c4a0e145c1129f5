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
from sparsec.layer import Kernel
from sparsec.node import sparse_protos
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


def test_only_x86_with_vnni_has_int8_kernels() -> None:
    assert not get_target("arm").supports("int8:1x4") and not get_target("wasm").supports("int8:1x4")
    assert X86.supports("int8:1x4") == X86.vnni_kernels


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
def test_int8_node_takes_the_uint8_activation_and_equals_the_exact_sums(tmp_path: Path) -> None:
    from sparsec.runtime import InferenceSession

    model = integer_model(np.int8, density=0.3, heads=3)
    res = compile_model(_save(tmp_path, model), tmp_path / "i.sparsec", CompileOptions(format="int8:1x4"))
    assert [la["format"] for la in res.layers] == ["int8:1x4"] * 3 and res.errors == {"y": 0.0}
    m = onnx.load(str(res.artifact / "model.onnx"))
    ops = [n.op_type for n in m.graph.node]
    assert "DequantizeLinear" not in ops and "MatMulInteger" not in ops  # no float conversion in front
    for node in sparse_protos(m):
        assert list(node.input)[0] == "xq" and list(node.input)[-1] == "xz"  # uint8 X ... its zero point
    one = integer_model(np.int8, density=0.3)  # _exact computes one head
    res = compile_model(_save(tmp_path, one, "one.onnx"), tmp_path / "one.sparsec", CompileOptions(format="int8:1x4"))
    sess = InferenceSession(res.artifact)
    for seed, batch in ((31, 1), (32, 2), (33, 10)):
        feeds = _feeds(seed, batch)
        np.testing.assert_array_equal(sess.run(None, feeds)[0], _exact(one, feeds))


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
    assert all("MatMulInteger layers with a uint8 activation only" in la["reason"] for la in res.layers)


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
