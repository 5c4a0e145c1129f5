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


@pytest.fixture(scope="module")
def library() -> Any:
    import tvm
    from tvm.script import tirx as T

    from sparsec.targets.simd.epilogue import activation
    from sparsec.targets.x86.target import X86Target

    def apply(act: str) -> Any:
        fn = activation(act, 0.0, 0.0)

        @T.prim_func
        def kernel(x: T.Buffer((POINTS,), "float32"), y: T.Buffer((POINTS,), "float32")) -> None:
            T.func_attr({"tirx.noalias": True})
            for i in range(POINTS // 16):
                for j in T.vectorized(16):
                    y[i * 16 + j] = fn(x[i * 16 + j])

        return kernel.with_attr("global_symbol", act)

    module = tvm.IRModule({act: apply(act) for act in REFERENCES})
    return tvm.compile(module, target=tvm.target.Target(X86Target().llvm_target()))


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
