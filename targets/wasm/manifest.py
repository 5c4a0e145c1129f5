"""The SIMD128 kernel table: the target-neutral x86 templates with schedules for WebAssembly SIMD.

A v128 holds 4 float32 lanes. WebAssembly has no register file of its own: V8 maps v128 values to the host's 16
xmm registers (x86-64) or 32 NEON registers, so the tiles keep x86's budget of 8 accumulators, which fits both.
"""

from __future__ import annotations

from sparsec.targets.x86.manifest import Variant, choose, supported_presets, variant_table, variants_for

VECTOR_WIDTH = 4  # float32 lanes in a v128
ACC_REGISTERS = 8  # vector accumulators per tile (leaves room for operands on a 16-register host)

# Block rows as vector lanes, up to 4 vectors per block row (16x1, the seed paper's mobile block shape).
VARIANTS = variant_table(ACC_REGISTERS, rows_vectors=4, rows_mu_cap=8)

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
