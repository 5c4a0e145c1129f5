"""The SIMD epilogue's transcendental activations (targets/simd/epilogue.py), compiled for this host and applied
elementwise against float64 on the whole useful range, each to the bound its docstring states: sigmoid and SiLU in
relative error, including the far negative tail where they are tiny (a cancellation there would show as a relative
error near 1, which the kernel tests' max-normalised error cannot see); GELU in absolute error scaled by max(1, |x|)
and in relative error where it is not tiny."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

POINTS = 1 << 16

REFERENCES = {
    "gelu": lambda x: x * 0.5 * np.vectorize(math.erfc)(-x / math.sqrt(2)),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "silu": lambda x: x / (1 + np.exp(-x)),
}


def elementwise(functions: dict[str, Any]) -> Any:
    """One vectorized float32 kernel of POINTS values per function (name -> f(x) on a TIR expression), compiled
    for this host."""
    import tvm
    from tvm.script import tirx as T

    from sparsec.targets.x86.target import X86Target

    def apply(name: str, fn: Any) -> Any:
        @T.prim_func
        def kernel(x: T.Buffer((POINTS,), "float32"), y: T.Buffer((POINTS,), "float32")) -> None:
            T.func_attr({"tirx.noalias": True})
            for i in range(POINTS // 16):
                for j in T.vectorized(16):
                    y[i * 16 + j] = fn(x[i * 16 + j])

        return kernel.with_attr("global_symbol", name)

    module = tvm.IRModule({name: apply(name, fn) for name, fn in functions.items()})
    return tvm.compile(module, target=tvm.target.Target(X86Target().llvm_target()))


@pytest.fixture(scope="module")
def library() -> Any:
    from sparsec.targets.simd.epilogue import activation

    return elementwise({act: activation(act, 0.0, 0.0) for act in REFERENCES})


@pytest.mark.parametrize("act", list(REFERENCES))
def test_activation_relative_error(library: Any, act: str) -> None:
    import tvm

    x = np.linspace(-13.0, 10.0, POINTS).astype(np.float32)
    y = tvm.runtime.tensor(np.full(POINTS, np.nan, np.float32))
    library[act](tvm.runtime.tensor(x), y)
    ref = REFERENCES[act](x.astype(np.float64))
    got = y.numpy().astype(np.float64)
    if act == "gelu":
        scaled = np.abs(got - ref) / np.maximum(1.0, np.abs(x))
        assert scaled.max() < 5e-7, f"gelu: absolute error {scaled.max():.2e} * max(1, |x|) at x = {x[scaled.argmax()]}"
        big = x > -1  # GELU(x) >= -0.16 there, far from 0 except near x = 0, where it is ~x/2
        rel = np.abs(got - ref)[big] / np.maximum(np.abs(ref)[big], 1e-30)
        assert rel.max() < 3e-6, f"gelu: relative error {rel.max():.2e} at x = {x[big][rel.argmax()]}"
        return
    normal = np.abs(ref) > 1e-30  # float32 results below that are subnormal or zero
    rel = np.abs(got - ref)[normal] / np.abs(ref)[normal]
    assert rel.max() < 1e-6, f"{act}: relative error {rel.max():.2e} at x = {x[normal][np.argmax(rel)]}"
    assert np.all(np.abs(got[~normal]) <= 1e-30)


def test_fused_quantize_dequantize_is_orts_at_rounding_boundaries() -> None:
    """``quantize_f32`` then an addition, against ORT's QuantizeLinear -> DequantizeLinear -> Add on values at and
    one ulp beside every rounding boundary (k + 1/2 steps) and beyond both saturation ends: the same bits. (Without
    the fence after the product, LLVM's FMA contraction changes a third of them; with ``x * (1 / scale)`` instead of
    the division, ORT's quantizer disagrees on 6%.)"""
    import onnxruntime as ort
    import tvm
    from onnx import TensorProto, helper, numpy_helper
    from tvm.script import tirx as T

    from sparsec.layer import Epilogue, Quant
    from sparsec.targets.simd.epilogue import make_value_epilogue
    from sparsec.targets.x86.target import X86Target

    scale, zp = np.float32(0.0123457), -3
    epi = make_value_epilogue(Epilogue(bias=True, quant=(Quant("product", float(scale), zp, -128, 127),)))

    @T.prim_func
    def kernel(
        x: T.Buffer((POINTS,), "float32"), b: T.Buffer((POINTS,), "float32"), y: T.Buffer((POINTS,), "float32")
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        for i in range(POINTS // 16):
            for j in T.vectorized(16):
                y[i * 16 + j] = epi(x[i * 16 + j], b[i * 16 + j], None)

    lib = tvm.compile(
        tvm.IRModule({"k": kernel.with_attr("global_symbol", "k")}), target=tvm.target.Target(X86Target().llvm_target())
    )
    rng = np.random.default_rng(0)
    edges = ((rng.integers(-300, 300, POINTS // 4) + np.float32(0.5)) * scale).astype(np.float32)
    x = np.concatenate([edges, np.nextafter(edges, np.float32(np.inf)), np.nextafter(edges, np.float32(-np.inf))])
    x = np.concatenate([x, rng.standard_normal(POINTS - x.size).astype(np.float32) * 3]).astype(np.float32)
    bias = (rng.standard_normal(POINTS) * 0.37).astype(np.float32)
    y = tvm.runtime.tensor(np.zeros(POINTS, np.float32))
    lib["k"](tvm.runtime.tensor(x), tvm.runtime.tensor(bias), y)

    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
        helper.make_node("Add", ["d", "b"], ["y"]),
    ]
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [POINTS]) for n in ("x", "b", "y")]
    inits = [numpy_helper.from_array(np.array(scale), "s"), numpy_helper.from_array(np.array(zp, np.int8), "z")]
    graph = helper.make_graph(nodes, "qdq", vi[:2], vi[2:], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    (ref,) = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x, "b": bias}
    )
    assert np.abs(x).max() / scale > 130  # both saturation ends are reached
    differ = np.flatnonzero(y.numpy() != ref)
    assert differ.size == 0, f"{differ.size} values differ from ORT's, e.g. x = {x[differ[0]]!r}"


def test_erf_of_the_quantized_gelu_within_its_bound() -> None:
    """``erf_f32`` (a QDQ model's GELU quantizes its erf: an error near a rounding boundary moves a value a step) is
    within 4.3e-7 of erf on the whole line; A&S 7.1.28 alone is 1.7e-6 off near 0 (1 - 1/p^16 cancels there)."""
    import tvm

    from sparsec.targets.simd.epilogue import erf_f32

    lib = elementwise({"erf": erf_f32})
    x = np.linspace(-8.0, 8.0, POINTS).astype(np.float32)
    y = tvm.runtime.tensor(np.full(POINTS, np.nan, np.float32))
    lib["erf"](tvm.runtime.tensor(x), y)
    err = np.abs(y.numpy().astype(np.float64) - np.vectorize(math.erf)(x.astype(np.float64)))
    assert err.max() < 4.5e-7, f"erf: absolute error {err.max():.2e} at t = {x[err.argmax()]}"
