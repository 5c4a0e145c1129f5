"""Kernels to TIR for the SIMD targets: each ``Kernel`` becomes the PrimFunc of its format's template, with the
schedule variant and tile sizes of the target's table; all of a model's kernels go into ONE IRModule."""

from __future__ import annotations

from typing import Any

from sparsec.errors import SparsecError
from sparsec.formats import get_format
from sparsec.layer import Kernel

from ..tir import finish
from .table import Table, choose, conv_mu


def _template(family: str, name: str) -> Any:
    """The template function of a table variant."""
    from .templates import bsr, csr, nm

    templates = {
        ("csr", "blocked"): csr.blocked,
        ("csr", "tiled"): csr.tiled,
        ("csr", "xt"): csr.xt,
        ("nm", "tiled"): nm.tiled,
        ("nm", "blocked"): nm.blocked,
        ("nm", "xt"): nm.xt,
        ("bsr", "rows_blocked"): bsr.rows_blocked,
        ("bsr", "rows"): bsr.rows,
        ("bsr", "blocked"): bsr.blocked,
        ("bsr", "xt"): bsr.xt,
    }
    return templates[(family, name)]


def instantiate_conv(k: Kernel, vw: int, acc: int) -> Any:
    """The PrimFunc of a conv kernel: one template per format family, over NCHW (templates/conv.py)."""
    from .epilogue import make_value_epilogue
    from .templates import conv

    fmt = get_format(k.format)
    if fmt.family not in ("csr", "bsr", "nm"):
        raise SparsecError(f"kernel {k.symbol}: no conv kernel for format {k.format!r}")
    assert k.conv is not None
    e = k.epilogue
    epi = make_value_epilogue(e)
    g, mu, extra = k.conv, conv_mu(fmt.family, fmt, k.K, vw, acc), (e.bias, e.residual)
    if fmt.family == "csr":
        func = conv.csr(g, k.N, k.array("values")[0][0], vw, epi, *extra, mu=mu)
    elif fmt.family == "nm":
        func = conv.nm(g, k.N, fmt.n, fmt.m, vw, epi, *extra, mu=mu)  # type: ignore[attr-defined]
    else:
        func = conv.bsr(g, k.N, fmt.r, fmt.c, k.array("data")[0][0], vw, epi, *extra, mu=mu)  # type: ignore[attr-defined]
    return finish(func, k.symbol, e.bias, e.residual)


def instantiate(k: Kernel, vw: int, table: Table, acc: int) -> Any:
    """The PrimFunc of one kernel (named ``k.symbol``, ABI argument list exactly as internals.md says).

    The templates are target-neutral (vector width and tile are parameters); ``table`` is the target's own schedule
    choices and ``acc`` its number of vector accumulators per tile.
    """
    if k.conv is not None:
        return instantiate_conv(k, vw, acc)
    from .epilogue import make_epilogue, make_int8_epilogue

    e = k.epilogue
    if get_format(k.format).family == "int8":  # its own ABI, with a run-time scale (templates/int8.py)
        from .templates import int8

        variant = choose(k, vw, table)
        dot = {"vnni": int8.VNNI, "sdot": int8.SDOT, "dot16": int8.WASM_DOT}[variant.name]
        words = k.array("words")[0][0]
        func = int8.kernel(k.K, k.N, words, make_int8_epilogue(e), dot, scales=max(e.scale, 1), mu=variant.mu(None, vw))
        return finish(func, k.symbol, e.bias, e.residual, scale=e.scale > 0)

    variant = choose(k, vw, table)
    fmt: Any = get_format(k.format)
    template = _template(variant.family, variant.name)
    epi = make_epilogue(k.epilogue)
    tile: dict[str, int] = {"mu": variant.mu(fmt, vw)} | ({"split": variant.split} if variant.split else {})
    if variant.family == "csr":
        func = template(k.K, k.N, k.array("values")[0][0], vw, epi, **tile)
    elif variant.family == "nm":
        func = template(k.K, k.N, fmt.n, fmt.m, vw, epi, **tile)
    else:
        func = template(k.K, k.N, fmt.r, fmt.c, k.array("data")[0][0], vw, epi, **tile)
    return finish(func, k.symbol, k.epilogue.bias, k.epilogue.residual)


def build_module(kernels: list[Kernel], vw: int, table: Table, acc: int, extra: dict[str, Any] | None = None) -> Any:
    """The IRModule holding one PrimFunc per kernel, sorted by symbol (equal kernel sets give equal bytes), then the
    target's ``extra`` functions by name (wasm: templates/quantize.py)."""
    import tvm

    funcs: dict[str, Any] = {}
    for k in sorted(kernels, key=lambda k: k.symbol):
        if k.symbol in funcs:
            raise SparsecError(f"duplicate kernel symbol {k.symbol!r}")
        funcs[k.symbol] = instantiate(k, vw, table, acc)
    for name, func in sorted((extra or {}).items()):
        if name in funcs:
            raise SparsecError(f"duplicate kernel symbol {name!r}")
        funcs[name] = func
    return tvm.IRModule(funcs)
