"""What the CPU SIMD targets (x86, ARM, wasm) share: the templates, a kernel table, and one TVM llvm compile.

A SIMD target names its vector width, its accumulator budget and its table (``table.variant_table``); it supplies
the llvm target and how the compiled module becomes its library (``export``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from sparsec.layer import Kernel

from ..base import Progress, Target, quiet
from .table import Table, variants_for


class SimdTarget(Target):
    """A CPU target whose kernels come from the shared SIMD templates through TVM's llvm backend."""

    acc_registers: ClassVar[int]  # vector accumulators per tile
    table: ClassVar[Table]
    vector_width: int  # float32 lanes
    schedule_note: ClassVar[str] = ""  # progress messages: " (NEON schedules)", ", aarch64"
    compile_note: ClassVar[str] = ""
    fuses_quantization: ClassVar[bool] = True
    int8_needs: ClassVar[str] = ""  # what the int8 kernels need, for the error of a forced int8 format

    def llvm_target(self) -> dict[str, Any]:
        """The TVM target as a JSON dict (string flags are rejected by TVM 0.27)."""
        raise NotImplementedError

    @property
    def int8_kernels(self) -> bool:
        """The CPU the kernels are built for has the int8 dot-product instruction of the table's int8 variant."""
        return False

    def supports(self, fmt: str) -> bool:
        """The table's formats; int8 ones only where ``int8_kernels``."""
        if fmt.startswith("int8:") and not self.int8_kernels:
            return False
        return bool(variants_for(fmt, self.vector_width, self.table))

    def unsupported_note(self, fmt: str) -> str:
        if fmt.startswith("int8:") and variants_for(fmt, self.vector_width, self.table):
            return f" (needs {self.int8_needs})"
        return ""

    def variants(self, fmt: str) -> list[str]:
        return [v.name for v in variants_for(fmt, self.vector_width, self.table)]

    def runtime_functions(self) -> dict[str, Any]:
        """Functions the target's runtime calls besides the kernels, built into every kernel library ({} here)."""
        return {}

    def compile(self, kernels: list[Kernel], progress: Progress = quiet) -> Any:
        """Every kernel in ONE IRModule, compiled by ONE ``tvm.compile`` (the TVM runtime module)."""
        import tvm

        from .instantiate import build_module

        progress(f"instantiating {len(kernels)} kernel templates{self.schedule_note}")
        mod = build_module(kernels, self.vector_width, self.table, self.acc_registers, self.runtime_functions())
        progress(f"compiling kernels (llvm{self.compile_note})")
        return tvm.compile(mod, target=tvm.target.Target(self.llvm_target()))

    def build(self, kernels: list[Kernel], out_path: Path, progress: Progress = quiet) -> None:
        lib = self.compile(list(kernels), progress)
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        self.export(lib, kernels, out_path, progress)

    def export(self, lib: Any, kernels: list[Kernel], out_path: Path, progress: Progress) -> None:
        """Write the compiled module as this target's kernel library."""
        lib.export_library(str(out_path))
        progress(f"wrote {out_path.name}")
