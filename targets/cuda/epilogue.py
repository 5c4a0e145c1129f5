"""The kernel epilogue for CUDA: ``Y = act(acc + bias + residual)`` with CUDA's own libdevice math.

The SIMD targets' epilogue spells every activation in arithmetic so that LLVM can vectorize it; on a GPU each thread
is scalar and TVM's CUDA codegen inlines expressions without sharing subterms, so that spelling becomes ~40 copies of a
polynomial per output (a 60k-line source for one GELU kernel). Here GELU is ``x * 0.5 * erfcf(-x / sqrt(2))``
(erfc keeps the relative precision for x < -3 where ``1 + erf`` cancels), sigmoid ``1 / (1 + expf(-x))``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sparsec.layer import Epilogue

from ..tir import EpilogueFn, epilogue_of


def _f(v: float) -> Any:
    from tvm import tirx

    return tirx.const(v, "float32")


def _call(name: str, x: Any) -> Any:
    from tvm import tirx

    return tirx.call_pure_extern("float32", name, x)


def activation(act: str, clip_min: float, clip_max: float) -> Callable[[Any], Any]:
    """The activation as a function on a float32 TIR expression."""
    from tvm import tirx

    def sigmoid(x: Any) -> Any:
        return _f(1.0) / (_f(1.0) + _call("expf", -x))

    table: dict[str, Callable[[Any], Any]] = {
        "none": lambda x: x,
        "relu": lambda x: tirx.max(x, _f(0.0)),
        "gelu": lambda x: x * _f(0.5) * _call("erfcf", x * _f(-0.7071067811865476)),
        "sigmoid": sigmoid,
        "clip": lambda x: tirx.min(tirx.max(x, _f(clip_min)), _f(clip_max)),
        "silu": lambda x: x * sigmoid(x),
        "hardswish": lambda x: x * tirx.max(tirx.min(x * _f(1.0 / 6.0) + _f(0.5), _f(1.0)), _f(0.0)),
    }
    return table[act]


def make_epilogue(e: Epilogue) -> EpilogueFn:
    """``epi(acc, bias_buf, residual_buf, m, n)``; buffers the kernel does not have are never touched."""
    if e.quant:  # the cuda target does not fuse them (Target.fuses_quantization)
        raise ValueError("cuda kernels have no fused QuantizeLinear / DequantizeLinear")
    return epilogue_of(activation(e.act, e.clip_min, e.clip_max), e.bias, e.residual)
