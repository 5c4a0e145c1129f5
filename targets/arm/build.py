"""Cross-compile the kernels for aarch64 (one IRModule, one ``tvm.compile``, exported with aarch64-linux-gnu-g++)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..base import KernelSpec, Progress
from .manifest import VARIANTS, VECTOR_WIDTH
from .toolchain import cross_cxx


def build_library(
    specs: list[KernelSpec], out_path: Path, target_json: dict[str, Any], progress: Progress | None = None
) -> None:
    """Compile ``specs`` with the NEON schedule table for ``target_json`` and link an aarch64 shared object."""
    import tvm
    from tvm.support import cc

    from ..x86.build import build_module

    say = progress or (lambda _msg: None)
    linker = cc.cross_compiler(cross_cxx())
    say(f"instantiating {len(specs)} kernel templates (NEON schedules)")
    mod = build_module(specs, VECTOR_WIDTH, VARIANTS)
    say("compiling kernels (llvm, aarch64)")
    lib = tvm.compile(mod, target=tvm.target.Target(target_json))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    lib.export_library(str(out_path), fcompile=linker)
    say(f"wrote {out_path.name} (aarch64)")
