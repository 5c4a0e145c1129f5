"""The kernel table of a SIMD target: which template variants exist per format family, when each applies, and its
parameters.

One table drives kernel choice (``choose``), instantiation (``simd/instantiate.py``) and the parametrized kernel
tests (tests/targets/test_x86_kernels.py), in the spirit of XNNPACK's f32-spmm manifest: variants come from a table,
not from copies of kernels. x86, ARM and wasm differ only in the four numbers of ``variant_table``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sparsec.errors import SparsecError
from sparsec.formats import get_format, list_presets
from sparsec.layer import Kernel


@dataclass(frozen=True)
class Variant:
    """One schedule of one format template; ``applies(fmt, vw)`` says whether it can run that format."""

    family: str  # "csr" | "bsr" | "nm": the template module
    name: str  # the template function
    applies: Callable[[Any, int], bool]
    mu: Callable[[Any, int], int]  # tile size along the batch (in vectors for "xt", in rows of X for "rows")
    split: int = 0  # partial sums per output row (csr / nm "blocked": the template's ``split``); 0: takes none


Table = tuple[Variant, ...]


def variant_table(acc: int, rows_vectors: int, rows_mu_cap: int, split: int) -> Table:
    """The kernel table of a SIMD target: ``acc`` vector accumulators per tile; the bsr ``rows`` variants (block
    rows as vector lanes) for blocks of at most ``rows_vectors`` whole vectors, with at most ``rows_mu_cap`` rows of
    X per tile; the csr / nm ``blocked`` tiles keep ``split`` partial sums of ``acc // split`` vectors per output row
    (more independent FMA chains, a smaller tile of X). The first applicable variant of a format is its default
    (cost model, no ``--tune``)."""

    def rows_mu(f: Any, vw: int) -> int:
        return max(1, min(rows_mu_cap, acc * vw // f.r))

    def rows_apply(f: Any, vw: int) -> bool:
        return bool(f.r % vw == 0 and f.r <= rows_vectors * vw)

    split_mu = max(1, acc // split)
    return (
        # blocked: cache-blocked tasks (a tile of rows of X each), see templates/csr.py
        Variant("csr", "blocked", lambda f, vw: True, lambda f, vw: split_mu, split),
        Variant("csr", "tiled", lambda f, vw: True, lambda f, vw: acc),
        Variant("csr", "xt", lambda f, vw: True, lambda f, vw: acc),
        Variant("nm", "tiled", lambda f, vw: True, lambda f, vw: acc),
        Variant("nm", "blocked", lambda f, vw: True, lambda f, vw: split_mu, split),
        Variant("nm", "xt", lambda f, vw: True, lambda f, vw: acc),
        # rows first: when the block height is a whole number of vectors it needs no transpose and no padding of M.
        Variant("bsr", "rows_blocked", rows_apply, rows_mu),
        Variant("bsr", "rows", rows_apply, rows_mu),
        Variant("bsr", "blocked", lambda f, vw: f.r <= acc, lambda f, vw: max(1, acc // max(f.r, 4))),
        Variant("bsr", "xt", lambda f, vw: f.r <= acc, lambda f, vw: max(1, acc // f.r)),
    )


def variants_for(fmt_name: str, vw: int, table: Table) -> list[Variant]:
    """Applicable variants of ``table`` in preference order (empty for dense or unknown formats)."""
    try:
        fmt = get_format(fmt_name)
    except ValueError:
        return []
    return [v for v in table if v.family == fmt.family and v.applies(fmt, vw)]


def supported_presets(vw: int, table: Table) -> list[str]:
    """The format presets that have at least one kernel variant in ``table``."""
    return [p for p in list_presets() if variants_for(p, vw, table)]


def choose(kernel: Kernel, vw: int, table: Table) -> Variant:
    """The variant named by ``kernel.variant``, else the first applicable one."""
    options = variants_for(kernel.format, vw, table)
    if not options:
        raise SparsecError(f"kernel {kernel.symbol}: no kernel for format {kernel.format!r} on this target")
    if not kernel.variant:
        return options[0]
    for v in options:
        if v.name == kernel.variant:
            return v
    names = ", ".join(v.name for v in options)
    raise SparsecError(
        f"kernel {kernel.symbol}: variant {kernel.variant!r} does not apply to {kernel.format} ({names})"
    )


COL_TILE_BYTES = 512 * 1024  # a conv pixel tile's slice of col (K rows) should stay in L2 while all rows use it


def conv_mu(family_name: str, fmt: Any, k: int, vw: int, acc: int) -> int:
    """Pixel vectors per tile of the conv templates (R*mu accumulators for bsr), fewer when K is so large that the
    tile's col slice would not stay in L2 (measured: K=2304 at 8 vectors ran at 40% of the speed of K=576)."""
    mu = max(1, min(acc, 2 * acc // fmt.r)) if family_name == "bsr" else acc
    return max(1, min(mu, max(2, COL_TILE_BYTES // (k * vw * 4))))
