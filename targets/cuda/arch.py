"""The GPU architectures ``--arch`` accepts (cheap to import: the CLI validates ``--arch`` before any work)."""

from __future__ import annotations

from sparsec.errors import SparsecError

ARCHS: tuple[str, ...] = ("sm_80", "sm_86", "sm_89", "sm_90")
DEFAULT_ARCH = "sm_80"


def check_arch(arch: str) -> str:
    """``arch`` ("" = the default) or a one-line SparsecError naming the accepted ones."""
    arch = arch or DEFAULT_ARCH
    if arch not in ARCHS:
        raise SparsecError(f"unknown --arch {arch!r} for --target cuda (known: {', '.join(ARCHS)})")
    return arch


def compute_of(arch: str) -> str:
    """The virtual architecture (PTX) of a real one: sm_80 -> compute_80."""
    return "compute_" + arch.removeprefix("sm_")
