"""The NEON kernel table: the same target-neutral templates as x86, with schedules chosen for AArch64 NEON.

NEON has 32 vector registers of 128 bits (4 float32 lanes) and ``fmla`` takes a broadcast lane as an operand, so the
tiles hold more accumulators than on x86 AVX2 (16 of 16 registers there would spill): half the register file,
``ACC_REGISTERS = 16``, is accumulators; the other 16 hold the X / XT vectors and broadcast weights in flight.
"""

from __future__ import annotations

from sparsec.targets.x86.manifest import Variant, choose, supported_presets, variant_table, variants_for

VECTOR_WIDTH = 4  # float32 lanes in a 128-bit NEON register
ACC_REGISTERS = 16  # vector accumulators per tile (of 32 registers)

# Block rows as vector lanes: up to 4 registers per block row (16x1), mu rows of X share each weight load.
VARIANTS = variant_table(ACC_REGISTERS, rows_vectors=4, rows_mu_cap=16)

__all__ = ["ACC_REGISTERS", "VARIANTS", "VECTOR_WIDTH", "arm_choose", "arm_presets", "arm_variants"]


def arm_variants(fmt_name: str) -> list[Variant]:
    """Applicable NEON variants of a format, in preference order."""
    return variants_for(fmt_name, VECTOR_WIDTH, VARIANTS)


def arm_presets() -> list[str]:
    """Format presets with a NEON kernel."""
    return supported_presets(VECTOR_WIDTH, VARIANTS)


def arm_choose(spec: object) -> Variant:
    """The variant a spec gets on NEON."""
    return choose(spec, VECTOR_WIDTH, VARIANTS)  # type: ignore[arg-type]
