"""fuse: a QDQ model's QuantizeLinear -> DequantizeLinear pairs after a sparse layer (and its dequantized bias) go
into the kernel's epilogue (structure), giving ORT's very bits where the float sums are exact (numeric); pairs ORT
would put back, targets without them and mismatched pairs stay on ORT, each with its reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from sparsec.layer import Quant
from tests.passes.graphs import K, N, model, ops, stage
from tests.targets.arm_models import needs_qemu
from tests.targets.wasm_helpers import needs_wasm

RNG = np.random.default_rng(11)
W_INT = np.where(RNG.random((N, K)) < 0.3, RNG.integers(-6, 7, (N, K)), 0).astype(np.float32)  # exact sums
B_INT8 = RNG.integers(-100, 100, N).astype(np.int8)
S1, Z1, S2, Z2, SB = 0.37, -3, 0.53, 10, 0.021  # float32-rounded by the model's initializers


def _scalars() -> dict[str, np.ndarray]:
    f, i8 = np.float32, np.int8
    return {
        "s1": np.array(S1, f),
        "z1": np.array(Z1, i8),
        "s2": np.array(S2, f),
        "z2": np.array(Z2, i8),
        "sb": np.array(SB, f),
        "bq": B_INT8,
        "w": W_INT.T.copy(),
    }


def qdq_tail(last: str = "y", extra: list[onnx.NodeProto] | None = None) -> list[onnx.NodeProto]:
    """fc -> Q/DQ(s1) -> Add(DQ(int8 bias)) -> Q/DQ(s2) -> ``last``."""
    return [
        helper.make_node("MatMul", ["x", "w"], ["mm"], name="fc"),
        helper.make_node("QuantizeLinear", ["mm", "s1", "z1"], ["q1"], name="q1"),
        helper.make_node("DequantizeLinear", ["q1", "s1", "z1"], ["d1"], name="dq1"),
        helper.make_node("DequantizeLinear", ["bq", "sb"], ["bias"], name="dq_bias"),
        helper.make_node("Add", ["d1", "bias"], ["h"], name="add_bias"),
        helper.make_node("QuantizeLinear", ["h", "s2", "z2"], ["q2"], name="q2"),
        helper.make_node("DequantizeLinear", ["q2", "s2", "z2"], [last], name="dq2"),
        *(extra or []),
    ]


def qdq_model(extra: list[onnx.NodeProto] | None = None, last: str = "y", out: str = "y") -> onnx.ModelProto:
    return model(qdq_tail(last, extra), _scalars(), {"x": ["batch", K]}, {out: ["batch", N]})


def test_quantizers_and_dequantized_bias_join_the_kernel() -> None:
    rewritten, layers = stage(qdq_model(), "fuse")
    fc = next(la for la in layers if la.name == "fc")
    assert fc.kernel is not None
    e = fc.kernel.epilogue
    assert ops(rewritten) == ["EPContext"], ops(rewritten)  # the bias's DequantizeLinear went with its Add
    s1, s2 = float(np.float32(S1)), float(np.float32(S2))
    assert e.bias and e.quant == (Quant("product", s1, Z1, -128, 127), Quant("bias", s2, Z2, -128, 127))
    assert fc.to_json()["epilogue"] == [
        "quantize-dequantize after the product",
        "bias",
        "quantize-dequantize after the bias",
    ]


def test_fused_quantizers_give_orts_bits(tmp_path: Path) -> None:
    import onnxruntime as ort

    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions
    from sparsec.runtime import InferenceSession

    m = qdq_model()
    src = tmp_path / "q.onnx"
    onnx.save(m, str(src))
    res = compile_model(src, tmp_path / "q.sparsec", CompileOptions(format="csr"))
    assert res.checked.startswith("1/1 sparse layers checked")
    ref, got = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]), InferenceSession(res.artifact)
    rng = np.random.default_rng(0)
    for batch, reach in ((1, 9), (3, 9), (64, 9), (64, 60)):  # 60: the first quantizer saturates
        x = rng.integers(-reach, reach + 1, (batch, K)).astype(np.float32)  # integer x and W: exact float sums
        (r,), (g,) = ref.run(None, {"x": x}), got.run(None, {"x": x})
        assert np.array_equal(g, r), float(np.abs(g - r).max())
        assert len(np.unique(r)) > 20  # many quantization levels
        if reach == 60:
            assert np.abs(x @ W_INT.T).max() > np.float32(S1) * 130  # beyond the int8 range of the first step


def test_pair_orts_qdq_propagation_would_put_back_stays() -> None:
    # dq2 -> Reshape -> QuantizeLinear: ORT would insert a Q/DQ pair after the kernel (and fail typing its value)
    flat = [
        helper.make_node("Reshape", ["d2", "shape"], ["r"], name="reshape"),
        helper.make_node("QuantizeLinear", ["r", "s2", "z2"], ["q3"], name="q3"),
        helper.make_node("DequantizeLinear", ["q3", "s2", "z2"], ["y"], name="dq3"),
    ]
    m = model(
        qdq_tail("d2", flat),
        {**_scalars(), "shape": np.array([-1, N], np.int64)},
        {"x": ["batch", K]},
        {"y": ["batch", N]},
    )
    rewritten, layers = stage(m, "fuse")
    fc = next(la for la in layers if la.name == "fc")
    assert fc.kernel is not None and [q.after for q in fc.kernel.epilogue.quant] == ["product"]
    assert any(
        "ORT's QDQ propagation would quantize the kernel's output again (Reshape -> QuantizeLinear)" in u
        for u in fc.unfused
    ), fc.unfused
    assert ops(rewritten)[:3] == ["EPContext", "QuantizeLinear", "DequantizeLinear"]


def test_cuda_and_mismatched_pairs_stay_on_ort() -> None:
    _, layers = stage(qdq_model(), "fuse", target="cuda")
    fc = next(la for la in layers if la.name == "fc")
    assert fc.kernel is not None and fc.kernel.epilogue.quant == ()
    assert any("do not fuse QuantizeLinear / DequantizeLinear" in u for u in fc.unfused), fc.unfused

    tail = qdq_tail()
    tail[2] = helper.make_node("DequantizeLinear", ["q1", "s2", "z1"], ["d1"], name="dq1")  # another scale
    m = model(tail, _scalars(), {"x": ["batch", K]}, {"y": ["batch", N]})
    _, layers = stage(m, "fuse")
    fc = next(la for la in layers if la.name == "fc")
    assert fc.kernel is not None and fc.kernel.epilogue.quant == () and not fc.kernel.epilogue.bias
    assert any("scale or zero point differs" in u for u in fc.unfused), fc.unfused


@pytest.mark.parametrize("stage_name", ["product", "bias"])
def test_no_second_bias_after_a_quantized_bias(stage_name: str) -> None:
    from sparsec.layer import Epilogue

    e = Epilogue(bias=stage_name == "bias", quant=(Quant(stage_name, 0.5, 0, -128, 127),))
    assert e.last_stage() == stage_name and e.quant_after(stage_name) is not None
    with pytest.raises(ValueError, match="one quantization per epilogue stage"):
        Epilogue(quant=(Quant("bias", 0.5, 0, -128, 127), Quant("product", 0.5, 0, -128, 127)))
    extra = [helper.make_node("Add", ["d2", "bias"], ["y"], name="add_again")]
    m = model(qdq_tail("d2", extra), _scalars(), {"x": ["batch", K]}, {"y": ["batch", N]})
    _, layers = stage(m, "fuse")
    fc = next(la for la in layers if la.name == "fc")
    assert fc.kernel is not None and len(fc.kernel.epilogue.quant) == 2
    assert any("the bias is already quantized" in u for u in fc.unfused), fc.unfused


@pytest.mark.parametrize("target", [pytest.param("wasm", marks=needs_wasm), pytest.param("arm", marks=needs_qemu)])
def test_fused_quantizers_give_orts_bits_on_arm_and_wasm(target: str, tmp_path: Path) -> None:
    import onnxruntime as ort

    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions
    from sparsec.targets.registry import get_target

    src = tmp_path / "q.onnx"
    onnx.save(qdq_model(), str(src))
    res = compile_model(src, tmp_path / "q.sparsec", CompileOptions(target=target, format="csr"))
    assert [len(la["epilogue"]) for la in res.layers] == [3] and res.checked.startswith("1/1 sparse layers checked")
    x = np.random.default_rng(1).integers(-60, 61, (5, K)).astype(np.float32)  # exact sums; the first step saturates
    (ref,) = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    (got,) = get_target(target).run_artifact(res.artifact, {"x": x})
    assert np.array_equal(got, ref), float(np.abs(got - ref).max())


def _qdq(v: str, out: str, s: str, z: str) -> list[onnx.NodeProto]:
    return [
        helper.make_node("QuantizeLinear", [v, s, z], [f"{out}_q"], name=f"{out}_q"),
        helper.make_node("DequantizeLinear", [f"{out}_q", s, z], [out], name=f"{out}_dq"),
    ]


def quantized_gelu(d: float = float(np.sqrt(2.0))) -> onnx.ModelProto:
    """fc -> Q/DQ -> bias -> Q/DQ -> GELU as onnxruntime.quantization writes a QDQ model's exported GELU (a pair
    after every node but the Div; its constants 1 and 1/2 quantized too) -> Q/DQ."""
    f, i8 = np.float32, np.int8
    scalars = {
        **_scalars(),
        **{f"s{k}": np.array(v, f) for k, v in {"e": 1 / 127, "c1": 1 / 255, "a": 1 / 127, "m": 0.25}.items()},
        **{f"s{k}": np.array(v, f) for k, v in {"c2": 0.5 / 255, "o": 0.125}.items()},
        **{
            f"z{k}": np.array(v, i8)
            for k, v in {"e": 0, "c1": -128, "a": -128, "m": -100, "c2": -128, "o": -90}.items()
        },
    }
    tail = qdq_tail("hq")
    tail += [
        helper.make_node("Constant", [], ["d"], value=helper.make_tensor("d", TensorProto.FLOAT, [], [d])),
        helper.make_node("Constant", [], ["one"], value=helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])),
        helper.make_node("Constant", [], ["half"], value=helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])),
        helper.make_node("Div", ["hq", "d"], ["t"], name="gelu_div"),
        helper.make_node("Erf", ["t"], ["erf"], name="gelu_erf"),
        *_qdq("erf", "e", "se", "ze"),
        *_qdq("one", "c1", "sc1", "zc1"),
        helper.make_node("Add", ["e", "c1"], ["add"], name="gelu_add"),
        *_qdq("add", "a", "sa", "za"),
        helper.make_node("Mul", ["hq", "a"], ["mul"], name="gelu_mul"),
        *_qdq("mul", "m", "sm", "zm"),
        *_qdq("half", "c2", "sc2", "zc2"),
        helper.make_node("Mul", ["m", "c2"], ["g"], name="gelu_half"),
        *_qdq("g", "y", "so", "zo"),
    ]
    return model(tail, scalars, {"x": ["batch", K]}, {"y": ["batch", N]})


def test_quantized_gelu_joins_the_kernel_with_its_five_pairs() -> None:
    rewritten, layers = stage(quantized_gelu(), "fuse")
    fc = next(la for la in layers if la.name == "fc")
    assert fc.kernel is not None and ops(rewritten) == ["EPContext"], ops(rewritten)
    e = fc.kernel.epilogue
    assert e.act == "gelu" and [q.after for q in e.quant] == ["product", "bias", "erf", "erf_add", "gelu_mul", "act"]
    d, one, half = e.gelu_constants
    assert d == float(np.float32(np.sqrt(2.0))) and 0.999 < one < 1.001 and 0.499 < half < 0.501  # as quantized
    assert fc.to_json()["epilogue"][-2:] == ["gelu (erf form, quantized steps)", "quantize-dequantize after the act"]

    _, layers = stage(quantized_gelu(d=1.2), "fuse")  # not GELU's constant: left to ORT, with the reason
    fc = next(la for la in layers if la.name == "fc")
    assert fc.kernel is not None and fc.kernel.epilogue.act == "none"
    assert any("constants are not GELU's" in u for u in fc.unfused), fc.unfused


def test_quantized_gelu_is_orts_but_for_rare_erf_flips(tmp_path: Path) -> None:
    import onnxruntime as ort

    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions
    from sparsec.runtime import InferenceSession
    from sparsec.verify_layers import FLIP_SHARE, quantized_error

    src = tmp_path / "g.onnx"
    onnx.save(quantized_gelu(), str(src))
    res = compile_model(src, tmp_path / "g.sparsec", CompileOptions(format="csr"))
    assert res.checked.startswith("1/1 sparse layers checked")
    ref, got = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]), InferenceSession(res.artifact)
    x = np.random.default_rng(2).integers(-9, 10, (512, K)).astype(np.float32)  # exact float sums
    (r,), (g,) = ref.run(None, {"x": x}), got.run(None, {"x": x})
    assert len(np.unique(r)) > 50 and (r < 0).any()  # GELU's negative dip is reached
    err, flips = quantized_error(g, r, (0.125, 0.25, 1 / 127))
    assert err == 0.0 and flips <= FLIP_SHARE * r.size, (err, flips)


def qdq_conv() -> onnx.ModelProto:
    """x -> Q/DQ -> Conv(DequantizeLinear(W int8, per output channel), no bias) -> Q/DQ -> y: the pattern ORT's
    WeightBiasQuantization quantizes again, per tensor, once compile has folded W to float32."""
    rng = np.random.default_rng(8)
    w = np.where(rng.random((16, 8, 3, 3)) < 0.3, rng.integers(-127, 128, (16, 8, 3, 3)), 0).astype(np.int8)
    inits = {
        "sx": np.array(0.04, np.float32), "zx": np.array(2, np.int8), "w": w,
        "ws": (rng.random(16) * 0.01 + 0.002).astype(np.float32), "sy": np.array(0.09, np.float32),
        "zy": np.array(-4, np.int8),
    }  # fmt: skip
    nodes = [
        *_qdq("x", "xd", "sx", "zx"),
        helper.make_node("DequantizeLinear", ["w", "ws"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        *_qdq("c", "y", "sy", "zy"),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 12, 12])],
        [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return onnx.shape_inference.infer_shapes(m)


def test_qdq_conv_keeps_its_folded_weights_in_ort(tmp_path: Path) -> None:
    import onnxruntime as ort

    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions
    from sparsec.runtime import InferenceSession
    from sparsec.runtime.session import DISABLED_OPTIMIZERS, KEEP_WEIGHTS, default_session_options, keep_float_weights
    from sparsec.verify_layers import quantized_error

    src = tmp_path / "c.onnx"
    onnx.save(qdq_conv(), str(src))
    res = compile_model(src, tmp_path / "c.sparsec", CompileOptions(format="csr"))
    assert [la["format"] for la in res.layers] == ["csr"] and res.checked.startswith("1/1 sparse layers checked")
    assert [la["epilogue"] for la in res.layers] == [["quantize-dequantize after the product"]]
    x = np.random.default_rng(0).standard_normal((1, 8, 12, 12)).astype(np.float32) * 3
    (r,) = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    (g,) = InferenceSession(res.artifact).run(None, {"x": x})
    assert quantized_error(g, r, (0.09,))[0] == 0.0
    so = keep_float_weights(keep_float_weights(default_session_options()))  # idempotent, keeps others
    assert so.get_session_config_entry(DISABLED_OPTIMIZERS) == KEEP_WEIGHTS
