"""Registry of weight formats by preset name: ``dense``, ``csr``, ``bsr:RxC``, ``nm:N:M`` and, for integer layers
only, ``int8:1x4`` (docs/internals.md)."""

from __future__ import annotations

import re

from .base import Format, Packed
from .bsr import Bsr
from .csr import Csr
from .dense import Dense
from .int8 import Int8Blocks
from .nm import NM
from .sparsity import BLOCK_SHAPES, NM_PATTERNS

__all__ = [
    "Format",
    "Packed",
    "get_format",
    "family",
    "list_presets",
    "integer_presets",
    "BLOCK_SHAPES",
    "NM_PATTERNS",
]

_BSR = re.compile(r"^bsr:(\d+)x(\d+)$")
_NM = re.compile(r"^nm:(\d+):(\d+)$")


def get_format(name: str) -> Format:
    """The format for a preset name; raises ValueError with the accepted spellings otherwise."""
    if name == "dense":
        return Dense()
    if name == "csr":
        return Csr()
    if m := _BSR.match(name):
        r, c = int(m[1]), int(m[2])
        if not (1 <= r <= 64 and 1 <= c <= 64):
            raise ValueError(f"block shape {r}x{c} out of range (1..64)")
        return Bsr(r, c)
    if m := _NM.match(name):
        return NM(int(m[1]), int(m[2]))
    if name == "int8:1x4":
        return Int8Blocks()
    raise ValueError(f"unknown format {name!r}: expected dense, csr, bsr:RxC, nm:N:M or int8:1x4")


def family(name: str) -> str:
    """The kernel family of a preset: ``bsr:16x1`` -> ``bsr`` (raises ValueError for unknown names)."""
    return get_format(name).family


def list_presets() -> list[str]:
    """The presets the compiler considers in ``auto`` mode."""
    return ["dense", "csr"] + [f"bsr:{r}x{c}" for r, c in BLOCK_SHAPES] + [f"nm:{n}:{m}" for n, m in NM_PATTERNS]


def integer_presets() -> list[str]:
    """The presets only integer layers (MatMulInteger) can take, considered in ``auto`` mode where the target has
    their kernels."""
    return ["int8:1x4"]
