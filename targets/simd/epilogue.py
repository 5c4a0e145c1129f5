"""The SIMD targets' kernel epilogue as TIR expressions: ``Y = act(acc + bias + residual)`` (docs/internals.md).

Every activation is built from arithmetic, selects and bit casts only, so LLVM vectorizes it (libm calls would be
scalarized: ~10 ns per element, more than the sparse product itself for a 768-wide layer).
Why not ``T.erf``/``T.exp``: on llvm x86 TVM 0.27 lowers them to libm calls (``erff``), which scalarizes the whole
epilogue loop (measured: GELU then costs ~10 ns per element, 4x the sparse product of a 1536x384 layer at 10%);
and ``0.5*x*(1+erf(x/sqrt(2)))`` loses relative precision for x < -3 (cancellation in 1+erf).
GELU here uses erfc for both signs (relative error ~3e-7 everywhere) and a Cody-Waite exp.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sparsec.layer import Epilogue

from ..tir import EpilogueFn, ScaledEpilogueFn, ValueEpilogueFn, epilogue_of

_LOG2E = 1.4426950408889634
_LN2_HI = 0.693145751953125  # ln 2 split so that n * _LN2_HI is exact for |n| < 2**11
_LN2_LO = 1.4286068203094173e-06
# Numerical Recipes erfcc: erfc(z) = t * exp(-z*z + P(t)), t = 1 / (1 + z/2), fractional error < 1.2e-7 for z >= 0.
_ERFC_P = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806,
           0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277)  # fmt: skip


def _f(v: float) -> Any:
    from tvm import tirx

    return tirx.const(v, "float32")


def exp_f32(x: Any) -> Any:
    """exp(x) for float32 x, relative error ~2e-7 on [-87, 88]; inputs are clamped to that range."""
    from tvm import tirx

    x = tirx.max(tirx.min(x, _f(88.0)), _f(-87.0))
    n = tirx.floor(x * _f(_LOG2E) + _f(0.5))
    return _exp_reduced(x - n * _f(_LN2_HI) - n * _f(_LN2_LO), n)


def exp_sum_f32(hi: Any, lo: Any) -> Any:
    """exp(hi + lo) without rounding hi + lo first: ``lo`` (|lo| < 2) joins after the Cody-Waite reduction of
    ``hi``, which is exact for |hi| >= 1 (hi - n*ln2_hi loses no bits there). One exp where ``gelu_f32`` took the
    product of two; ``hi`` is clamped to [-86, 86]."""
    from tvm import tirx

    hi = tirx.max(tirx.min(hi, _f(86.0)), _f(-86.0))
    n = tirx.floor((hi + lo) * _f(_LOG2E) + _f(0.5))
    return _exp_reduced(hi - n * _f(_LN2_HI) - n * _f(_LN2_LO) + lo, n)


def _exp_reduced(r: Any, n: Any) -> Any:
    """exp(r) * 2**n for |r| <= ~ln(2)/2 and -127 <= n <= 127 (2**-127 gives 0)."""
    from tvm import tirx

    p = _f(1.0 / 5040.0)
    for c in (1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0):
        p = p * r + _f(c)
    bits = tirx.shift_left(tirx.Cast("int32", n) + tirx.const(127, "int32"), tirx.const(23, "int32"))
    return p * tirx.reinterpret("float32", bits)


def _split12(x: Any) -> Any:
    """x with its low 12 mantissa bits cleared: the product of two such numbers is exact in float32."""
    from tvm import tirx

    return tirx.reinterpret("float32", tirx.bitwise_and(tirx.reinterpret("int32", x), tirx.const(-4096, "int32")))


def gelu_f32(x: Any) -> Any:
    """0.5 * x * (1 + erf(x / sqrt(2))) = x * Phi(x), precise to ~3e-7 relative on the whole line, vectorizable.

    Both signs use e = 0.5 * erfc(|x| / sqrt(2)) in the Numerical Recipes form t * exp(-z*z + P(t)):
    Phi(x) = 1 - e for x >= 0 and e for x < 0 (``tirx.erf`` would become a scalar libm ``erff`` call and cost
    ~10 ns per element). The exponent is formed from x*x/2 with x split into exact halves: rounding z (or z*z)
    first would cost ~1e-5 relative near x = -11; its two parts meet inside one ``exp_sum_f32``.
    """
    from tvm import tirx

    ax = tirx.abs(x)
    z = ax * _f(0.7071067811865476)
    t = _f(1.0) / (_f(1.0) + _f(0.5) * z)
    poly = _f(_ERFC_P[-1])
    for c in reversed(_ERFC_P[:-1]):
        poly = poly * t + _f(c)
    xh = _split12(ax)
    xl = ax - xh
    half_erfc = _f(0.5) * t * exp_sum_f32(_f(-0.5) * (xh * xh), poly - _f(0.5) * ((_f(2.0) * xh + xl) * xl))
    return x * tirx.Select(x >= _f(0.0), _f(1.0) - half_erfc, half_erfc)


def sigmoid_f32(x: Any) -> Any:
    """1 / (1 + exp(-x)) without overflow: e = exp(-|x|) <= 1 in both branches."""
    from tvm import tirx

    e = exp_f32(-tirx.abs(x))
    return tirx.Select(x >= _f(0.0), _f(1.0) / (_f(1.0) + e), e / (_f(1.0) + e))


def silu_f32(x: Any) -> Any:
    """x * sigmoid(x) (SiLU / Swish)."""
    return x * sigmoid_f32(x)


def hardswish_f32(x: Any) -> Any:
    """ONNX HardSwish: x * max(0, min(1, x/6 + 1/2))."""
    from tvm import tirx

    return x * tirx.max(tirx.min(x * _f(1.0 / 6.0) + _f(0.5), _f(1.0)), _f(0.0))


def activation(act: str, clip_min: float, clip_max: float) -> Callable[[Any], Any]:
    """The activation as a function on a float32 TIR expression."""
    from tvm import tirx

    table: dict[str, Callable[[Any], Any]] = {
        "none": lambda x: x,
        "relu": lambda x: tirx.max(x, _f(0.0)),
        "gelu": gelu_f32,
        "sigmoid": sigmoid_f32,
        "clip": lambda x: tirx.min(tirx.max(x, _f(clip_min)), _f(clip_max)),
        "silu": silu_f32,
        "hardswish": hardswish_f32,
    }
    return table[act]


def make_epilogue(e: Epilogue) -> EpilogueFn:
    """``epi(acc, bias_buf, residual_buf, m, n)``; buffers that the kernel does not have are never touched."""
    return epilogue_of(activation(e.act, e.clip_min, e.clip_max), e.bias, e.residual)


def make_value_epilogue(e: Epilogue) -> ValueEpilogueFn:
    """``epi(acc, bias, residual)`` on loaded values (None: absent): for templates whose buffers are not [M, N]."""
    fn = activation(e.act, e.clip_min, e.clip_max)

    def epi(acc: Any, bias: Any, residual: Any) -> Any:
        x = acc
        if bias is not None:
            x = x + bias
        if residual is not None:
            x = x + residual
        return fn(x)

    return epi


def make_int8_epilogue(e: Epilogue) -> ScaledEpilogueFn:
    """``epi(acc, scale_buf, bias_buf, residual_buf, m, n)`` for an int32 sum: float32 as ORT's Cast, times the scale
    (``scale[n]`` with one value per output, else ``scale[0]``), then the float epilogue. The product goes through
    ``llvm.arithmetic.fence`` before the additions: TVM's LLVM contracts ``x * s + b`` into an FMA (one rounding; 25%
    of 64k sums differed from numpy's Mul then Add, measured), and ORT rounds the Mul and the Add apart."""
    from tvm import tirx

    rest = make_epilogue(e)

    def epi(acc: Any, scale_buf: Any, bias_buf: Any, res_buf: Any, m: Any, n: Any) -> Any:
        x = tirx.Cast("float32", acc)
        if e.scale:
            x = x * scale_buf[n if e.scale > 1 else 0]
            if e.bias or e.residual:
                x = tirx.call_llvm_pure_intrin("float32", "llvm.arithmetic.fence", x)
        return rest(x, bias_buf, res_buf, m, n)

    return epi
