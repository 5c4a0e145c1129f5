"""The WebAssembly target: sparse layers as wasm32 + SIMD128 kernels, the rest on onnxruntime-web, all in JS.

The artifact runs the whole model with no native code: ``sparsec.mjs`` walks ``plan.json`` (dense ONNX segments on
onnxruntime-web, sparsec nodes on ``kernels.wasm``); see ``bundle`` and internals.md, "WebAssembly artifact".
A v128 holds 4 float32 lanes. WebAssembly has no register file of its own: V8 maps v128 values to the host's 16
xmm registers (x86-64) or 32 NEON registers, so the tiles keep x86's budget of 8 accumulators, which fits both.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sparsec.layer import Kernel

from ..base import Progress, quiet
from ..simd.table import Table, Variant, variant_table
from ..simd.target import SimdTarget
from ..simd.templates.quantize import SYMBOL as QUANTIZE_SYMBOL
from .toolchain import node_missing

TRIPLE = "wasm32-unknown-unknown-wasm"
VECTOR_WIDTH = 4  # float32 lanes in a v128
ACC_REGISTERS = 8  # vector accumulators per tile (leaves room for operands on a 16-register host)
# Block rows as vector lanes, up to 4 vectors per block row (16x1, the seed paper's mobile block shape).
# split 1: the csr / nm blocked tiles keep 8 vectors (32 rows of X) and no partial sums; wasm has no fused
# multiply-add to wait on, and the larger tile reads each weight for more rows (MiniLM-L3 90% in node, batch 1:
# 2.69-2.84x onnxruntime-web with it, 2.56-2.62x with 4 partial sums).
# int8:1x4 (integer layers): i32x4.dot_i16x8_s on the activation's bytes widened to int16 pairs in the transpose,
# 8 vectors of tokens per tile (4 from 16 tokens, 1 below; templates/int8.py, WASM_DOT). SIMD128 always has it.
VARIANTS = variant_table(ACC_REGISTERS, rows_vectors=4, rows_mu_cap=8, split=1) + (
    Variant("int8", "dot16", lambda f, vw: vw == VECTOR_WIDTH, lambda f, vw: 8),
)
JS_DIR = Path(__file__).with_name("js")
ENTRY = "sparsec.mjs"
# onnxruntime-web's wasm-only build: the ES module, its emscripten glue and the wasm binary it loads (same folder).
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")


def ort_web_version() -> str:
    import json

    from .toolchain import ort_web_dist

    return str(json.loads((ort_web_dist().parent / "package.json").read_text())["version"])


class WasmTarget(SimdTarget):
    """wasm32 + SIMD128 via TVM's llvm backend, linked by emcc; run by node or a browser."""

    name = "wasm"
    library_name = "kernels.wasm"
    isa = "simd128"
    vector_width = VECTOR_WIDTH
    acc_registers = ACC_REGISTERS
    table: ClassVar[Table] = VARIANTS
    sparse_conv = True  # the shared conv templates, with the SIMD128 vector width
    runner_hint = "`sparsec run` runs wasm artifacts in node; time them with `python -m benchmarks.wasm_node`"
    schedule_note = " (SIMD128 schedules)"
    compile_note = ", wasm32 + simd128"
    # Each onnxruntime-web segment is optimized alone, so ORT's fusions across a sparse step (LayerNorm and its
    # Add, an attention's MatMuls) are left unfused and rounded their own way: a dynamically quantized MiniLM-L3 90%
    # with int8:1x4 layers ended 0.014 off ORT x86 at batch 8, each layer exact on ORT's inputs.
    foreign_ort = "onnxruntime-web, run in segments between the sparse steps,"

    def __init__(self) -> None:
        self._progress: Progress = quiet

    def runtime_functions(self) -> dict[str, Any]:
        """DynamicQuantizeLinear for the runner's quantize steps (targets/simd/templates/quantize.py)."""
        from ..simd.templates.quantize import dynamic_quantize

        return {QUANTIZE_SYMBOL: dynamic_quantize()}

    @property
    def int8_kernels(self) -> bool:
        """i32x4.dot_i16x8_s is part of SIMD128: every engine that runs these kernels has it."""
        return True

    @classmethod
    def cpu_note(cls) -> str:
        return "generic wasm32 + SIMD128"

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
            "runtime_functions": [QUANTIZE_SYMBOL],  # in kernels.wasm beside the kernels
            "llvm_target": self.llvm_target(),
            "entry": ENTRY,
            "runtime": {"onnxruntime-web": _ort_version_or_unknown(), "files": list(ORT_FILES)},
        }

    def export(self, lib: Any, kernels: list[Kernel], out_path: Path, progress: Progress) -> None:
        """Write the wasm object and link it with the driver into ``kernels.wasm`` (emcc)."""
        from .link import link

        with tempfile.TemporaryDirectory(prefix="sparsec-wasm-") as tmp:
            obj = Path(tmp) / "kernels.o"
            lib.mod.write_to_file(str(obj))
            progress("linking kernels.wasm (emcc)")
            link(obj, [k.symbol for k in kernels] + list(self.runtime_functions()), out_path)
        progress(f"wrote {out_path.name} (wasm32 + simd128)")

    def bundle(self, folder: Path, progress: Progress = quiet) -> None:
        """The JS side: plan + dense segments + weights (from ``folder``/model.onnx), sparsec.mjs, onnxruntime-web."""
        import onnx

        from sparsec.errors import SparsecError

        from .plan import write_plan
        from .toolchain import ort_web_dist, ort_web_missing

        self._progress = progress
        missing = ort_web_missing()
        if missing:
            raise SparsecError(missing)
        plan = write_plan(onnx.load(str(folder / "model.onnx")), folder)
        dense = sum(s["kind"] == "dense" for s in plan.steps)
        progress(
            f"wasm plan: {len(plan.steps)} steps ({dense} onnxruntime-web segments, {len(plan.steps) - dense} sparse)"
        )
        shutil.copy2(JS_DIR / ENTRY, folder / ENTRY)
        for name in ORT_FILES:
            shutil.copy2(ort_web_dist() / name, folder / name)

    def cannot_tune(self) -> str:
        """--tune times kernels natively; wasm kernels run only inside a JS engine."""
        return "not available for --target wasm (kernels are timed natively; use python -m benchmarks.wasm_node)"

    def cannot_take(self, model: Any) -> str:
        """Non-tensor graph inputs, and non-tensor outputs other than a ZipMap's (ai.onnx.ml sequences and maps):
        onnxruntime-web passes tensors only; the JS runner computes a ZipMap giving a graph output itself."""
        from ..base import non_tensor_value
        from .plan import is_zipmap

        zipmaps = {n.output[0] for n in model.graph.node if is_zipmap(n)}
        rest = type(model.graph)()
        rest.input.extend(model.graph.input)
        rest.output.extend(o for o in model.graph.output if o.name not in zipmaps)
        value = non_tensor_value(type(model)(graph=rest))
        why = "onnxruntime-web passes only tensors (the sparsec JS runner computes ZipMap outputs itself)"
        return f"{value} is not a tensor; {why} (--target x86 runs such models)" if value else ""

    def cannot_run(self) -> str:
        """Why this host cannot run wasm artifacts ("" when node and onnxruntime-web are installed)."""
        return node_missing()

    def run_artifact(self, artifact: Path, feeds: dict[str, np.ndarray]) -> list[Any]:
        from .node_runner import run_in_node

        return run_in_node(artifact, feeds)


def _ort_version_or_unknown() -> str:
    try:
        return ort_web_version()
    except (OSError, KeyError, ValueError):
        return "unknown"
