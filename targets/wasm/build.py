"""Compile the kernels for wasm32 + SIMD128 (one IRModule, one ``tvm.compile``) and link ``kernels.wasm``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..base import KernelSpec, Progress
from .link import link
from .manifest import VARIANTS, VECTOR_WIDTH


def build_library(
    specs: list[KernelSpec], out_path: Path, target_json: dict[str, Any], progress: Progress | None = None
) -> None:
    """Compile ``specs`` with the SIMD128 table to a wasm object and link it with the driver into ``out_path``."""
    import tvm

    from ..x86.build import build_module

    say = progress or (lambda _msg: None)
    say(f"instantiating {len(specs)} kernel templates (SIMD128 schedules)")
    mod = build_module(specs, VECTOR_WIDTH, VARIANTS)
    say("compiling kernels (llvm, wasm32 + simd128)")
    lib = tvm.compile(mod, target=tvm.target.Target(target_json))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sparsec-wasm-") as tmp:
        obj = Path(tmp) / "kernels.o"
        lib.mod.write_to_file(str(obj))
        say("linking kernels.wasm (emcc)")
        link(obj, [s.symbol for s in specs], out_path)
    say(f"wrote {out_path.name} (wasm32 + simd128)")
