"""The SIMD128 kernel table: the target-neutral x86 templates with schedules for WebAssembly SIMD.

A v128 holds 4 float32 lanes. WebAssembly has no register file of its own: V8 maps v128 values to the host's 16
xmm registers (x86-64) or 32 NEON registers, so the tiles keep x86's budget of 8 accumulators, which fits both.
"""

from __future__ import annotations

from sparsec.targets.x86.manifest import Variant, choose, supported_presets, variants_for

VECTOR_WIDTH = 4  # float32 lanes in a v128
ACC_REGISTERS = 8  # vector accumulators per tile (leaves room for operands on a 16-register host)

VARIANTS: tuple[Variant, ...] = (
    Variant("csr", "tiled", lambda f, vw: True, lambda f, vw: ACC_REGISTERS),
    Variant("csr", "xt", lambda f, vw: True, lambda f, vw: ACC_REGISTERS),
    Variant("nm", "tiled", lambda f, vw: True, lambda f, vw: ACC_REGISTERS),
    Variant("nm", "xt", lambda f, vw: True, lambda f, vw: ACC_REGISTERS),
    # Block rows as vector lanes, up to 4 vectors per block row (16x1, the seed paper's mobile block shape).
    Variant(
        "bsr",
        "rows",
        lambda f, vw: f.r % vw == 0 and f.r <= 4 * vw,
        lambda f, vw: max(1, min(8, ACC_REGISTERS * vw // f.r)),
    ),
    Variant("bsr", "xt", lambda f, vw: f.r <= ACC_REGISTERS, lambda f, vw: max(1, ACC_REGISTERS // f.r)),
)

__all__ = ["ACC_REGISTERS", "VARIANTS", "VECTOR_WIDTH", "wasm_choose", "wasm_presets", "wasm_variants"]


def wasm_variants(fmt_name: str) -> list[Variant]:
    """Applicable SIMD128 variants of a format, in preference order."""
    return variants_for(fmt_name, VECTOR_WIDTH, VARIANTS)


def wasm_presets() -> list[str]:
    """Format presets with a SIMD128 kernel."""
    return supported_presets(VECTOR_WIDTH, VARIANTS)


def wasm_choose(spec: object) -> Variant:
    """The variant a spec gets on SIMD128."""
    return choose(spec, VECTOR_WIDTH, VARIANTS)  # type: ignore[arg-type]
