"""TIR pieces every TVM target shares: the epilogue signature and how a template becomes one kernel's PrimFunc.

Templates are written with the full ABI argument list (X, packed arrays, bias, residual, Y) because a TVMScript
signature cannot be conditional; ``finish`` then drops bias / residual when the kernel has none, which is safe since
the epilogue never touches a buffer the kernel does not have.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

EpilogueFn = Callable[[Any, Any, Any, Any, Any], Any]  # (acc, bias buffer, residual buffer, m, n) -> value
ValueEpilogueFn = Callable[[Any, Any, Any], Any]  # (acc, bias value or None, residual value or None) -> value
ScaledEpilogueFn = Callable[[Any, Any, Any, Any, Any, Any], Any]  # (int32 acc, scale, bias, residual buffers, m, n)


def epilogue_of(fn: Callable[[Any], Any], bias: bool, residual: bool) -> EpilogueFn:
    """``fn(acc + bias[n] + residual[m, n])`` as an ``EpilogueFn`` (each target supplies its own activation ``fn``)."""

    def epi(acc: Any, bias_buf: Any, res_buf: Any, m: Any, n: Any) -> Any:
        x = acc
        if bias:
            x = x + bias_buf[n]
        if residual:
            x = x + res_buf[m, n]
        return fn(x)

    return epi


def finish(func: Any, symbol: str, bias: bool, residual: bool, scale: bool | None = None) -> Any:
    """Drop the unused optional parameters and name the function; ``scale`` is None for a template without a scale
    parameter (only int8 templates have one, before the bias), else whether the kernel keeps it."""
    from tvm import tirx

    drop = set()
    params = list(func.params)
    # Parameter order is X, arrays..., [scale,] bias, residual, Y.
    if scale is False:
        drop.add(params[-4])
    if not bias:
        drop.add(params[-3])
    if not residual:
        drop.add(params[-2])
    keep = [p for p in params if p not in drop]
    # TVM 0.27: parameters are buffer-typed Vars (no separate buffer_map), so dropping the Var drops the buffer.
    out = tirx.PrimFunc(keep, func.body, func.ret_type, func.attrs)
    return out.with_attr("global_symbol", symbol)
