"""The x86 kernel table: which template variants exist per format family, when each applies, and its parameters.

This one table drives kernel choice (``choose``), instantiation (``instantiate``) and the parametrized kernel tests
(tests/targets/test_x86_kernels.py), in the spirit of XNNPACK's f32-spmm manifest: variants come from a table, not
from copies of kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sparsec.errors import SparsecError
from sparsec.formats import get_format, list_presets

from ..base import KernelSpec

ACC_REGISTERS = 8  # vector accumulators per tile: enough independent FMA chains, leaves registers for operands


@dataclass(frozen=True)
class Variant:
    """One schedule of one format template; ``applies(fmt, vw)`` says whether it can run that format."""

    family: str  # "csr" | "bsr" | "nm": the template module
    name: str  # the template function
    applies: Callable[[Any, int], bool]
    mu: Callable[[Any, int], int]  # tile size along the batch (in vectors for "xt", in rows of X for "rows")


def variant_table(acc: int, rows_vectors: int, rows_mu_cap: int) -> tuple[Variant, ...]:
    """The kernel table of a SIMD target: ``acc`` vector accumulators per tile; the bsr ``rows`` variant (block rows
    as vector lanes) for blocks of at most ``rows_vectors`` whole vectors, with at most ``rows_mu_cap`` rows of X per
    tile. x86, ARM and wasm differ only in these three numbers."""
    return (
        Variant("csr", "tiled", lambda f, vw: True, lambda f, vw: acc),
        Variant("csr", "xt", lambda f, vw: True, lambda f, vw: acc),
        Variant("nm", "tiled", lambda f, vw: True, lambda f, vw: acc),
        Variant("nm", "xt", lambda f, vw: True, lambda f, vw: acc),
        # rows first: when the block height is a whole number of vectors it needs no transpose and no padding of M.
        Variant(
            "bsr",
            "rows",
            lambda f, vw: f.r % vw == 0 and f.r <= rows_vectors * vw,
            lambda f, vw: max(1, min(rows_mu_cap, acc * vw // f.r)),
        ),
        Variant("bsr", "xt", lambda f, vw: f.r <= acc, lambda f, vw: max(1, acc // f.r)),
    )


VARIANTS = variant_table(ACC_REGISTERS, rows_vectors=2, rows_mu_cap=8)


def family(fmt_name: str) -> str:
    """``bsr:16x1`` -> ``bsr``."""
    return fmt_name.split(":", 1)[0]


def variants_for(fmt_name: str, vw: int, table: tuple[Variant, ...] = VARIANTS) -> list[Variant]:
    """Applicable variants of ``table`` in preference order (empty for dense or unknown formats)."""
    if family(fmt_name) not in {v.family for v in table}:
        return []
    fmt = get_format(fmt_name)
    return [v for v in table if v.family == family(fmt_name) and v.applies(fmt, vw)]


def supported_presets(vw: int, table: tuple[Variant, ...] = VARIANTS) -> list[str]:
    """The format presets that have at least one kernel variant in ``table``."""
    return [p for p in list_presets() if variants_for(p, vw, table)]


def choose(spec: KernelSpec, vw: int, table: tuple[Variant, ...] = VARIANTS) -> Variant:
    """The variant named by ``spec.variant``, else the first applicable one."""
    options = variants_for(spec.format, vw, table)
    if not options:
        raise SparsecError(f"kernel {spec.symbol}: no kernel for format {spec.format!r} on this target")
    if not spec.variant:
        return options[0]
    for v in options:
        if v.name == spec.variant:
            return v
    names = ", ".join(v.name for v in options)
    raise SparsecError(f"kernel {spec.symbol}: variant {spec.variant!r} does not apply to {spec.format} ({names})")


COL_TILE_BYTES = 512 * 1024  # a conv pixel tile's slice of col (K rows) should stay in L2 while all rows use it


def conv_mu(family_name: str, fmt: Any, k: int, vw: int) -> int:
    """Pixel vectors per tile of the conv templates (R*mu accumulators for bsr), fewer when K is so large that the
    tile's col slice would not stay in L2 (measured: K=2304 at 8 vectors ran at 40% of the speed of K=576)."""
    mu = max(1, min(ACC_REGISTERS, 2 * ACC_REGISTERS // fmt.r)) if family_name == "bsr" else ACC_REGISTERS
    return max(1, min(mu, max(2, COL_TILE_BYTES // (k * vw * 4))))


def instantiate_conv(spec: KernelSpec, vw: int) -> Any:
    """The PrimFunc of a conv spec: one template per format family, over NCHW (templates/conv.py)."""
    from .epilogue import make_value_epilogue
    from .templates import conv
    from .templates.common import finish

    fam = family(spec.format)
    if fam not in ("csr", "bsr", "nm"):
        raise SparsecError(f"kernel {spec.symbol}: no x86 conv kernel for format {spec.format!r}")
    assert spec.conv is not None
    fmt = get_format(spec.format)
    epi = make_value_epilogue(spec.act, spec.clip_min, spec.clip_max)
    g, mu, extra = spec.conv, conv_mu(fam, fmt, spec.K, vw), (spec.bias, spec.residual)
    if fam == "csr":
        func = conv.csr(g, spec.N, spec.array("values")[0][0], vw, epi, *extra, mu=mu)
    elif fam == "nm":
        func = conv.nm(g, spec.N, fmt.n, fmt.m, vw, epi, *extra, mu=mu)
    else:
        func = conv.bsr(g, spec.N, fmt.r, fmt.c, spec.array("data")[0][0], vw, epi, *extra, mu=mu)
    return finish(func, spec.symbol, spec.bias, spec.residual)


def instantiate(spec: KernelSpec, vw: int, table: tuple[Variant, ...] = VARIANTS) -> Any:
    """The PrimFunc for one spec (named ``spec.symbol``, ABI argument list exactly as internals.md says).

    The templates are target-neutral (vector width and tile are parameters); ``table`` is the target's own
    schedule choices (the ARM target passes its NEON table).
    """
    import importlib

    if spec.conv is not None:
        return instantiate_conv(spec, vw)

    from .epilogue import make_epilogue
    from .templates.common import finish

    variant = choose(spec, vw, table)
    fmt = get_format(spec.format)
    template = getattr(importlib.import_module(f".templates.{variant.family}", __package__), variant.name)
    epi = make_epilogue(spec.bias, spec.residual, spec.act, spec.clip_min, spec.clip_max)
    mu = variant.mu(fmt, vw)
    K, N = spec.K, spec.N  # noqa: N806
    if variant.family == "csr":
        func = template(K, N, spec.array("values")[0][0], vw, epi, mu=mu)
    elif variant.family == "nm":
        func = template(K, N, fmt.n, fmt.m, vw, epi, mu=mu)
    else:
        func = template(K, N, fmt.r, fmt.c, spec.array("data")[0][0], vw, epi, mu=mu)
    return finish(func, spec.symbol, spec.bias, spec.residual)
