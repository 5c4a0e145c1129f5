"""The WebAssembly target: sparse layers as wasm32 + SIMD128 kernels, the rest on onnxruntime-web, all in JS.

The artifact runs the whole model with no native code: ``sparsec.mjs`` walks ``plan.json`` (dense ONNX segments on
onnxruntime-web, sparsec nodes on ``kernels.wasm``); see ``bundle`` and internals.md, "WebAssembly artifact".
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..base import KernelSpec, Progress
from .manifest import ACC_REGISTERS, VECTOR_WIDTH, wasm_variants
from .toolchain import node_missing

TRIPLE = "wasm32-unknown-unknown-wasm"
JS_DIR = Path(__file__).with_name("js")
ENTRY = "sparsec.mjs"
# onnxruntime-web's wasm-only build: the ES module, its emscripten glue and the wasm binary it loads (same folder).
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")


def ort_web_version() -> str:
    import json

    from .toolchain import ort_web_dist

    return str(json.loads((ort_web_dist().parent / "package.json").read_text())["version"])


class WasmTarget:
    """wasm32 + SIMD128 via TVM's llvm backend, linked by emcc; run by node or a browser."""

    name = "wasm"
    library_name = "kernels.wasm"
    isa = "simd128"
    vector_width = VECTOR_WIDTH
    sparse_conv = True  # the x86 conv templates, with the SIMD128 vector width

    def __init__(self) -> None:
        self._progress: Progress | None = None

    def llvm_target(self) -> dict[str, Any]:
        return {"kind": "llvm", "mtriple": TRIPLE, "mattr": ["+simd128"]}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arch": "wasm32",
            "cpu": "generic",
            "isa": self.isa,
            "vector_width": self.vector_width,
            "acc_registers": ACC_REGISTERS,
            "features": ["simd128"],
            "llvm_target": self.llvm_target(),
            "entry": ENTRY,
            "runtime": {"onnxruntime-web": _ort_version_or_unknown(), "files": list(ORT_FILES)},
        }

    def supports(self, fmt: str) -> bool:
        return bool(wasm_variants(fmt))

    def variants(self, fmt: str) -> list[str]:
        return [v.name for v in wasm_variants(fmt)]

    def build(self, specs: list[KernelSpec], out_path: Path, progress: Progress | None = None) -> None:
        from .build import build_library

        build_library(list(specs), out_path, self.llvm_target(), progress)

    def bundle(self, folder: Path, progress: Progress | None = None) -> None:
        """The JS side: plan + dense segments + weights (from ``folder``/model.onnx), sparsec.mjs, onnxruntime-web."""
        import onnx

        from sparsec.errors import SparsecError

        from .plan import write_plan
        from .toolchain import ort_web_dist, ort_web_missing

        self._progress = progress
        say = progress or (lambda _msg: None)
        missing = ort_web_missing()
        if missing:
            raise SparsecError(missing)
        plan = write_plan(onnx.load(str(folder / "model.onnx")), folder)
        dense = sum(s["kind"] == "dense" for s in plan.steps)
        say(f"wasm plan: {len(plan.steps)} steps ({dense} onnxruntime-web segments, {len(plan.steps) - dense} sparse)")
        shutil.copy2(JS_DIR / ENTRY, folder / ENTRY)
        for name in ORT_FILES:
            shutil.copy2(ort_web_dist() / name, folder / name)

    def cannot_tune(self) -> str:
        """--tune times kernels natively; wasm kernels run only inside a JS engine."""
        return "not available for --target wasm (kernels are timed natively; use python -m benchmarks.wasm_node)"

    def cannot_run(self) -> str:
        """Why this host cannot run wasm artifacts ("" when node and onnxruntime-web are installed)."""
        return node_missing()

    def run_artifact(self, artifact: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        from .node_runner import run_in_node

        return run_in_node(artifact, feeds)


def _ort_version_or_unknown() -> str:
    try:
        return ort_web_version()
    except (OSError, KeyError, ValueError):
        return "unknown"
