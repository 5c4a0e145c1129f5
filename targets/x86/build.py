"""Build all kernels of a model into ONE shared library (one IRModule, one ``tvm.compile``, one export)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparsec.errors import SparsecError

from ..base import KernelSpec, Progress


def build_module(specs: list[KernelSpec], vw: int, table: tuple[Any, ...] | None = None) -> Any:
    """The IRModule holding one PrimFunc per spec (variants from ``table``, default x86's); distinct symbols."""
    import tvm

    from .manifest import VARIANTS, instantiate

    funcs: dict[str, Any] = {}
    for spec in sorted(specs, key=lambda s: s.symbol):  # order-independent output for equal spec sets
        if spec.symbol in funcs:
            raise SparsecError(f"duplicate kernel symbol {spec.symbol!r}")
        funcs[spec.symbol] = instantiate(spec, vw, table or VARIANTS)
    return tvm.IRModule(funcs)


def build_library(
    specs: list[KernelSpec], out_path: Path, target_json: dict[str, Any], vw: int, progress: Progress | None = None
) -> None:
    """Compile ``specs`` for ``target_json`` (a TVM llvm target dict) and export the library to ``out_path``."""
    import tvm

    say = progress or (lambda _msg: None)
    say(f"instantiating {len(specs)} kernel templates")
    mod = build_module(specs, vw)
    say("compiling kernels (llvm)")
    lib = tvm.compile(mod, target=tvm.target.Target(target_json))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    lib.export_library(str(out_path))
    say(f"wrote {out_path.name}")
