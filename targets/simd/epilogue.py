"""The SIMD targets' kernel epilogue as TIR expressions: ``Y = act(acc + bias + residual)`` (docs/internals.md).

Every activation is built from arithmetic, selects and bit casts only, so LLVM vectorizes it (libm calls would be
scalarized: ~10 ns per element, more than the sparse product itself for a 768-wide layer).
Why not ``T.erf``/``T.exp``: on llvm x86 TVM 0.27 lowers them to libm calls (``erff``), which scalarizes the whole
epilogue loop (measured: GELU then costs ~10 ns per element, 4x the sparse product of a 1536x384 layer at 10%).
GELU uses a rational erf without exp (``gelu_f32``); sigmoid and SiLU a Cody-Waite exp.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from sparsec.layer import Epilogue, Quant

from ..tir import EpilogueFn, ScaledEpilogueFn, ValueEpilogueFn, epilogue_of

_LOG2E = 1.4426950408889634
_LN2_HI = 0.693145751953125  # ln 2 split so that n * _LN2_HI is exact for |n| < 2**11
_LN2_LO = 1.4286068203094173e-06
# Abramowitz & Stegun 7.1.28: erf(z) = 1 - (1 + a1 z + ... + a6 z^6)^-16 for z >= 0, absolute error <= 3e-7.
_ERF_A = (0.0705230784, 0.0422820123, 0.0092705272, 0.0001520143, 0.0002765672, 0.0000430638)


def _f(v: float) -> Any:
    from tvm import tirx

    return tirx.const(v, "float32")


def exp_f32(x: Any) -> Any:
    """exp(x) for float32 x, relative error ~2e-7 on [-87, 88]; inputs are clamped to that range."""
    from tvm import tirx

    x = tirx.max(tirx.min(x, _f(88.0)), _f(-87.0))
    n = tirx.floor(x * _f(_LOG2E) + _f(0.5))
    r = x - n * _f(_LN2_HI) - n * _f(_LN2_LO)
    p = _f(1.0 / 5040.0)
    for c in (1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0):
        p = p * r + _f(c)
    bits = tirx.shift_left(tirx.Cast("int32", n) + tirx.const(127, "int32"), tirx.const(23, "int32"))
    return p * tirx.reinterpret("float32", bits)


def _erf_positive(z: Any) -> Any:
    """erf(z) for z >= 0 by Abramowitz & Stegun 7.1.28: 1 - (1 + a1 z + ... + a6 z^6)^-16, the power by four
    squarings and one division, no exp (float32: within 1.7e-6 of erf near 0, where 1 - 1/p^16 cancels; 4.3e-7
    from z = 1)."""
    from tvm import tirx

    z = tirx.min(z, _f(6.0))  # erf(6) is 1 in float32; p^16 stays finite
    p = _f(_ERF_A[-1])
    for a in reversed(_ERF_A[:-1]):
        p = p * z + _f(a)
    p = p * z + _f(1.0)
    for _ in range(4):
        p = p * p
    return _f(1.0) - _f(1.0) / p


# erf(t) = 2/sqrt(pi) * sum_n (-1)^n t^(2n+1) / (n! (2n+1)): the terms up to n = 10 (the next is below 2e-9 at |t| 1)
_ERF_TAYLOR = tuple((-1) ** n * 2 / math.sqrt(math.pi) / (math.factorial(n) * (2 * n + 1)) for n in range(11))


def erf_f32(t: Any) -> Any:
    """erf(t) within 4.3e-7 everywhere (tests/targets/test_epilogue_math.py): its Taylor series for |t| < 1, where
    A&S 7.1.28 (``_erf_positive``) loses precision to cancellation, A&S beyond. For a quantized erf (a QDQ model's
    GELU), whose every error near a rounding boundary can move a value one step."""
    from tvm import tirx

    t2 = t * t
    series = _f(_ERF_TAYLOR[-1])
    for c in reversed(_ERF_TAYLOR[:-1]):
        series = series * t2 + _f(c)
    far = _erf_positive(tirx.abs(t))
    return tirx.Select(tirx.abs(t) < _f(1.0), series * t, tirx.Select(t >= _f(0.0), far, -far))


def gelu_f32(x: Any) -> Any:
    """0.5 * x * (1 + erf(x / sqrt(2))) with erf from Abramowitz & Stegun 7.1.28: a degree-6 polynomial raised to
    the 16th power by four squarings and one division, no exp. Absolute error 3.7e-7 * max(1, |x|) at most on the whole
    line (tests/targets/test_epilogue_math.py); where GELU(x) is tiny (x < -3) that is not small relative to it,
    as in ORT's own Gelu (the same 1 + erf form), and far below what a following layer can see.

    It replaced an erfc form with two exps, relative error 3e-7 everywhere, which cost ~60 vector instructions per
    16 elements: in a csr kernel 1024x384 -> 1536 at 90% (AMD Zen 4, 2 threads) the GELU epilogue took 1.16 ms of
    2.38 ms, this one 0.21 ms of 1.43 ms (same-process A/B).
    """
    from tvm import tirx

    erf = _erf_positive(tirx.abs(x) * _f(0.7071067811865476))  # erf(|x| / sqrt 2)
    return _f(0.5) * x * (_f(1.0) + tirx.Select(x >= _f(0.0), erf, -erf))


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


def _fence(x: Any) -> Any:
    """``x`` rounded on its own: TVM's LLVM contracts ``a * b + c`` into one FMA (one rounding) unless the product
    goes through ``llvm.arithmetic.fence``; ORT rounds its Mul (or DequantizeLinear) and the Add after it apart."""
    from tvm import tirx

    return tirx.call_llvm_pure_intrin("float32", "llvm.arithmetic.fence", x)


def quantize_f32(x: Any, q: Quant) -> Any:
    """ORT's DequantizeLinear of its QuantizeLinear of ``x``: ``rint(x / scale)`` (a true division, rounded half to
    even, as MLAS's QuantizeLinear), saturated to the integer type's range less the zero point, times the scale."""
    from tvm import tirx

    r = tirx.round(x / _f(q.scale))  # TVM lowers round to llvm.nearbyint: half to even
    r = tirx.max(tirx.min(r, _f(float(q.hi - q.zero_point))), _f(float(q.lo - q.zero_point)))
    return r * _f(q.scale)


def _stages(e: Epilogue) -> Callable[[Any, Any, Any], Any]:
    """``epi(x, bias value or None, residual value or None)`` after the product (and scale): the bias, the
    residual and the activation, each followed by its fused quantization (``e.quant``), rounded as ORT's separate
    nodes round them."""
    fn = activation(e.act, e.clip_min, e.clip_max)

    def quant(x: Any, stage: str, added_next: bool) -> Any:
        q = e.quant_after(stage)
        if q is None:
            return x
        x = quantize_f32(x, q)
        return _fence(x) if added_next else x

    if e.gelu_constants:  # a QDQ model's GELU: each of its nodes rounded (and quantized) as ORT's
        d, one, half = e.gelu_constants

        def fn(x: Any) -> Any:
            erf = quant(erf_f32(x / _f(d)), "erf", True)
            return quant(x * quant(erf + _f(one), "erf_add", False), "gelu_mul", False) * _f(half)

    def epi(x: Any, bias: Any, residual: Any) -> Any:
        x = quant(x, "product", bias is not None or residual is not None)
        if bias is not None:
            x = quant(x + bias, "bias", residual is not None)
        if residual is not None:
            x = quant(x + residual, "residual", False)
        return quant(fn(x), "act", False)

    return epi


def make_epilogue(e: Epilogue) -> EpilogueFn:
    """``epi(acc, bias_buf, residual_buf, m, n)``; buffers that the kernel does not have are never touched."""
    if not e.quant:
        return epilogue_of(activation(e.act, e.clip_min, e.clip_max), e.bias, e.residual)
    stages = _stages(e)

    def epi(acc: Any, bias_buf: Any, res_buf: Any, m: Any, n: Any) -> Any:
        return stages(acc, bias_buf[n] if e.bias else None, res_buf[m, n] if e.residual else None)

    return epi


def make_value_epilogue(e: Epilogue) -> ValueEpilogueFn:
    """``epi(acc, bias, residual)`` on loaded values (None: absent): for templates whose buffers are not [M, N]."""
    return _stages(e)


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
                x = _fence(x)
        return rest(x, bias_buf, res_buf, m, n)

    return epi
