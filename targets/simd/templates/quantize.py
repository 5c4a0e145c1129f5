"""DynamicQuantizeLinear as a kernel in ``kernels.wasm``: the JS runner's ``quantize`` steps (targets/wasm/plan.py).

onnxruntime-web runs DynamicQuantizeLinear in scalar code, ~5 ns per value (MiniLM-L3 dynamic, batch 1: 5.5 ms of
its 12 DynamicQuantizeLinear nodes in a 27 ms run); inside the whole model ORT fuses them into its int8 MatMuls,
which a sparse step leaves apart. This kernel computes the same bytes in SIMD128, as ORT's CPU kernel defines them
(checked bit for bit against ORT in tests/targets/test_wasm_quantize.py):
``lo = min(min(x), 0)``, ``hi = max(max(x), 0)``, ``scale = hi == lo ? 1 : (hi - lo) / 255``,
``zero_point = round_half_even(clamp(0 - lo / scale, 0, 255))``,
``y = clamp(round_half_even(x / scale) + zero_point, 0, 255)``, each operation in float32 (a true division).

ABI (a packed function like the sparse kernels): ``sparsec_dynamic_quantize(X f32[n], Y u8[n], scale f32[1],
zero_point u8[1])``.
"""

from __future__ import annotations

from typing import Any

SYMBOL = "sparsec_dynamic_quantize"
LANES = 4  # float32 lanes of a v128


def dynamic_quantize() -> Any:
    """The PrimFunc (named ``SYMBOL``)."""
    from tvm.script import tirx as T

    lanes = LANES

    @T.prim_func
    def func(x: T.handle, y: T.handle, scale: T.Buffer((1,), "float32"), zero: T.Buffer((1,), "uint8")) -> None:
        T.func_attr({"tirx.noalias": True})
        n = T.int64()
        X = T.match_buffer(x, (n,), "float32")
        Y = T.match_buffer(y, (n,), "uint8")
        lo = T.alloc_buffer((lanes,), "float32")
        hi = T.alloc_buffer((lanes,), "float32")
        for i in T.vectorized(lanes):  # from 0: the range includes zero
            lo[i] = T.float32(0)
            hi[i] = T.float32(0)
        for b in range(n // lanes):
            for i in T.vectorized(lanes):
                lo[i] = T.min(lo[i], X[b * lanes + i])
                hi[i] = T.max(hi[i], X[b * lanes + i])
        for t in range(n % lanes):
            lo[0] = T.min(lo[0], X[n // lanes * lanes + t])
            hi[0] = T.max(hi[0], X[n // lanes * lanes + t])
        for i in range(1, lanes):
            lo[0] = T.min(lo[0], lo[i])
            hi[0] = T.max(hi[0], hi[i])
        scale[0] = T.if_then_else(hi[0] == lo[0], T.float32(1), (hi[0] - lo[0]) / T.float32(255))
        zp = T.alloc_buffer((1,), "float32")
        zp[0] = T.nearbyint(T.max(T.float32(0), T.min(T.float32(255), T.float32(0) - lo[0] / scale[0])))
        zero[0] = T.Cast("uint8", zp[0])
        for b in range(n // lanes):
            for i in T.vectorized(lanes):
                Y[b * lanes + i] = T.Cast(
                    "uint8",
                    T.max(T.float32(0), T.min(T.float32(255), T.nearbyint(X[b * lanes + i] / scale[0]) + zp[0])),
                )
        for t in range(n % lanes):
            m = n // lanes * lanes + t
            Y[m] = T.Cast("uint8", T.max(T.float32(0), T.min(T.float32(255), T.nearbyint(X[m] / scale[0]) + zp[0])))

    return func.with_attr("global_symbol", SYMBOL)
