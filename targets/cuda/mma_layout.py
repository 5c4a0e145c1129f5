"""Operand layout of ``mma.sp.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32`` as the nm:2:4 kernel
fills it (PTX ISA, "Warp-level matrix instructions for sparse mma"); docs/internals.md, "CUDA 2:4 kernel".

The kernel computes Y^T tile = W tile (A: 16 output rows n x 16 inputs k, 2:4 sparse) @ X^T tile (B: 16 k x 8 rows m).
Lane l of the warp has ``g = l // 4`` (its group) and ``t = l % 4`` (its thread in the group):
- A (compressed to 16 x 8): register r (0, 1) holds the two kept values of row ``g + 8r`` in 2:4 group ``t`` of the
  k16 step (logical columns 4t..4t+3), low half = the lower position;
- B: register r holds X^T[k, g] for k = 2t + 8r (low half) and 2t + 8r + 1 (high half);
- C/D: element i (0..3) is the accumulator of row ``g + 8*(i // 2)``, column ``2t + i % 2``;
- metadata ``e`` (sparsity selector 0: lane 4g's register counts for the group): bits 16h + 4j .. 16h + 4j + 3 hold
  the two 2-bit positions (lower one in the low bits) of row ``g + 8h``, 2:4 group j; every lane of the group
  carries the same value (each lane encodes its own group t, then two xor-shuffles OR the four together).
The ISA requires the two positions of a group to be distinct and increasing; sparsec's nm packing only promises
increasing positions for the kept nonzeros (an unused slot has value 0 and any in-range position), so ``canon_*``
re-encodes every group: swapped pairs are swapped back, equal positions (an unused slot) become (p, p+1) or (2, 3)
with the summed value placed at p.

Every function is plain arithmetic on its arguments, so the TVMScript template calls it with TIR expressions and
the CPU model (``emulate.py``) with numpy arrays; ``where``/``minimum`` come from the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Where = Callable[[Any, Any, Any], Any]
Minimum = Callable[[Any, Any], Any]


def a_row(lane: Any, reg: int) -> Any:
    """Row (output n inside the 16-row tile) of A register ``reg`` of ``lane``."""
    return lane // 4 + reg * 8


def a_group(lane: Any) -> Any:
    """The 2:4 group (0..3 inside the k16 step) whose kept values ``lane`` holds."""
    return lane % 4


def b_k(lane: Any, reg: int, half: int) -> Any:
    """k (0..15 inside the step) of half ``half`` of B register ``reg``."""
    return (lane % 4) * 2 + half + reg * 8


def b_col(lane: Any) -> Any:
    """Column of B (row m inside the 8-row tile) that ``lane`` loads."""
    return lane // 4


def c_row(lane: Any, i: int) -> Any:
    """Row (n inside the tile) of accumulator element ``i``."""
    return lane // 4 + (i // 2) * 8


def c_col(lane: Any, i: int) -> Any:
    """Column (m inside the 8-row tile) of accumulator element ``i``."""
    return (lane % 4) * 2 + i % 2


def meta_shift(lane: Any, reg: int) -> Any:
    """Bit offset of the 4-bit code of (row of A register ``reg``, group ``a_group(lane)``) in the metadata."""
    return reg * 16 + (lane % 4) * 4


def canon_pos(p0: Any, p1: Any, slot: int, where: Where, minimum: Minimum) -> Any:
    """Position of slot ``slot`` after re-encoding: distinct and increasing (see the module docstring)."""
    low = minimum(p0, 2)
    if slot == 0:
        return where(p0 == p1, low, where(p0 < p1, p0, p1))
    return where(p0 == p1, low + 1, where(p0 < p1, p1, p0))


def canon_val(p0: Any, p1: Any, v0: Any, v1: Any, slot: int, zero: Any, where: Where) -> Any:
    """Value of slot ``slot`` after re-encoding (an equal pair's sum lands on the slot holding the position)."""
    s = v0 + v1
    if slot == 0:
        return where(p0 == p1, where(p0 == 3, zero, s), where(p0 < p1, v0, v1))
    return where(p0 == p1, where(p0 == 3, s, zero), where(p0 < p1, v1, v0))
