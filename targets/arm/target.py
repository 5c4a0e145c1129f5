"""The ARM target: AArch64 with NEON, optionally tuned for one core (``--cpu``), cross-compiled on this host.

The artifact is self-contained for an app that embeds ONNX Runtime for aarch64: besides ``model.onnx`` and
``kernels.so`` it carries the aarch64 sparsec EP and the TVM runtime libraries it loads (see ``bundle``).
"""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from sparsec.errors import SparsecError

from ..base import KernelSpec, Progress
from .manifest import ACC_REGISTERS, VECTOR_WIDTH, arm_variants
from .toolchain import qemu_missing

TRIPLE = "aarch64-linux-gnu"
# The files an app adds, besides model.onnx and kernels.so (internals.md, "ARM artifact").
EP_FILE = "libsparsec_ep.so"
RUNTIME_FILES = ("libtvm_runtime.so", "libtvm_ffi.so")


@cache
def known_cpus() -> tuple[str, ...]:
    """CPU names LLVM (as bundled with TVM) accepts for aarch64."""
    import tvm
    from tvm.target import codegen

    return tuple(codegen.llvm_get_cpu_archlist(tvm.target.Target({"kind": "llvm", "mtriple": TRIPLE})))


class ArmTarget:
    """aarch64 + NEON via TVM's llvm backend; ``cpu`` ("" = generic) becomes LLVM's ``mcpu``."""

    name = "arm"
    library_name = "kernels.so"
    isa = "neon"
    vector_width = VECTOR_WIDTH

    def __init__(self, cpu: str = "") -> None:
        self.cpu = cpu
        self._progress: Progress | None = None  # the compile's, reused by run_artifact for one-time builds

    def check_cpu(self) -> None:
        """A one-line error for a CPU name LLVM does not know (TVM itself would only warn and use generic)."""
        if self.cpu and self.cpu not in known_cpus():
            close = [c for c in known_cpus() if c.split("-")[0] == self.cpu.split("-")[0]][:8]
            hint = f" (e.g. {', '.join(close)})" if close else " (e.g. cortex-a76, neoverse-n1, apple-m4)"
            raise SparsecError(f"unknown --cpu {self.cpu!r} for --target arm{hint}")

    def llvm_target(self) -> dict[str, Any]:
        t: dict[str, Any] = {"kind": "llvm", "mtriple": TRIPLE, "mattr": ["+neon"]}
        if self.cpu:
            t["mcpu"] = self.cpu
        return t

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arch": "aarch64",
            "cpu": self.cpu or "generic",
            "isa": self.isa,
            "vector_width": self.vector_width,
            "acc_registers": ACC_REGISTERS,
            "features": ["neon"],
            "llvm_target": self.llvm_target(),
            "ep_library": EP_FILE,
            "runtime_libraries": list(RUNTIME_FILES),
        }

    def supports(self, fmt: str) -> bool:
        return bool(arm_variants(fmt))

    def build(self, specs: list[KernelSpec], out_path: Path, progress: Progress | None = None) -> None:
        from .build import build_library

        self.check_cpu()
        build_library(list(specs), out_path, self.llvm_target(), progress)

    def bundle(self, folder: Path, progress: Progress | None = None) -> None:
        """Copy the aarch64 EP and the TVM runtime libraries it needs into the artifact folder."""
        from .ep import aarch64_ep
        from .wheels import aarch64_libs

        self._progress = progress
        libs = aarch64_libs(progress)
        shutil.copy2(aarch64_ep(progress), folder / EP_FILE)
        shutil.copy2(libs.tvm_runtime, folder / "libtvm_runtime.so")
        shutil.copy2(libs.tvm_ffi, folder / "libtvm_ffi.so")

    def cannot_run(self) -> str:
        """Why this host cannot run the artifact ("" when qemu-aarch64 can)."""
        return qemu_missing()

    def run_artifact(self, artifact: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        from .qemu import run_artifact

        return run_artifact(artifact, feeds, cpu=self.cpu, progress=self._progress)
