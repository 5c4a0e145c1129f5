"""The one place that maps target names to target classes (``--target``, and an artifact's manifest)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sparsec.errors import SparsecError

from .base import Target


def _x86() -> type[Target]:
    from .x86.target import X86Target

    return X86Target


def _arm() -> type[Target]:
    from .arm.target import ArmTarget

    return ArmTarget


def _wasm() -> type[Target]:
    from .wasm.target import WasmTarget

    return WasmTarget


def _cuda() -> type[Target]:
    from .cuda.target import CudaTarget

    return CudaTarget


# Each entry imports its target only when asked for (the CLI stays instant).
_TARGETS: dict[str, Callable[[], type[Target]]] = {"x86": _x86, "arm": _arm, "wasm": _wasm, "cuda": _cuda}


def known_targets() -> list[str]:
    """Names accepted by ``get_target``."""
    return sorted(_TARGETS)


def target_class(name: str) -> type[Target]:
    try:
        return _TARGETS[name]()
    except KeyError:
        raise SparsecError(f"unknown target {name!r} (known targets: {', '.join(known_targets())})") from None


def get_target(name: str, cpu: str = "", arch: str = "") -> Target:
    """The target called ``name`` for ``--cpu`` / ``--arch`` ("" = the target's default); unknown names, CPUs or
    archs raise a one-line SparsecError listing the known ones."""
    return target_class(name).from_options(cpu, arch)


def target_of(manifest: dict[str, Any]) -> Target:
    """The target an artifact was built for (its manifest's ``target`` entry)."""
    info = manifest.get("target")
    if not isinstance(info, dict):
        raise SparsecError("corrupted manifest (no target)")
    return target_class(str(info.get("name"))).from_manifest(info)
