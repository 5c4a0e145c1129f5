"""The ARM target: AArch64 with NEON, optionally tuned for one core (``--cpu``), cross-compiled on this host.

The artifact is self-contained for an app that embeds ONNX Runtime for aarch64: besides ``model.onnx`` and
``kernels.so`` it carries the aarch64 sparsec EP and the TVM runtime libraries it loads (see ``bundle``).

NEON has 32 vector registers of 128 bits (4 float32 lanes) and ``fmla`` takes a broadcast lane as an operand, so the
tiles hold more accumulators than on x86 AVX2 (16 of 16 registers there would spill): half the register file,
``ACC_REGISTERS = 16``, is accumulators; the other 16 hold the X / XT vectors and broadcast weights in flight.
"""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sparsec.errors import SparsecError
from sparsec.layer import Kernel

from ..base import Progress, Target, quiet
from ..simd.table import Table, Variant, variant_table
from ..simd.target import SimdTarget
from .toolchain import cross_cxx, qemu_missing

TRIPLE = "aarch64-linux-gnu"
VECTOR_WIDTH = 4  # float32 lanes in a 128-bit NEON register
ACC_REGISTERS = 16  # vector accumulators per tile (of 32 registers)
# Block rows as vector lanes: up to 4 registers per block row (16x1), mu rows of X share each weight load.
# split 2: csr / nm blocked tiles of 8 vectors in 2 partial sums (16 FMA chains, 32 rows of X): chosen by
# instruction count and register budget, not timed (no ARM hardware here).
# int8:1x4 (integer layers): sdot on 4 int32 lanes, 8 vectors of tokens per tile (4 from 16 tokens, 1 below;
# templates/int8.py); only for a --cpu with Armv8.2 dot products (ArmTarget.int8_kernels): the generic aarch64
# build runs on cores without them.
VARIANTS = variant_table(ACC_REGISTERS, rows_vectors=4, rows_mu_cap=16, split=2) + (
    Variant("int8", "sdot", lambda f, vw: vw == VECTOR_WIDTH, lambda f, vw: 8),
)
# The files an app adds, besides model.onnx and kernels.so (internals.md, "ARM artifact").
EP_FILE = "libsparsec_ep.so"
RUNTIME_FILES = ("libtvm_runtime.so", "libtvm_ffi.so")


@cache
def cpu_features(cpu: str) -> frozenset[str]:
    """The LLVM features of an aarch64 core ("" = generic)."""
    import tvm
    from tvm.target import codegen

    target: dict[str, Any] = {"kind": "llvm", "mtriple": TRIPLE} | ({"mcpu": cpu} if cpu else {})
    return frozenset(str(f) for f in codegen.llvm_get_cpu_features(tvm.target.Target(target)))


@cache
def known_cpus() -> tuple[str, ...]:
    """CPU names LLVM (as bundled with TVM) accepts for aarch64."""
    import tvm
    from tvm.target import codegen

    return tuple(codegen.llvm_get_cpu_archlist(tvm.target.Target({"kind": "llvm", "mtriple": TRIPLE})))


class ArmTarget(SimdTarget):
    """aarch64 + NEON via TVM's llvm backend; ``cpu`` ("" = generic) becomes LLVM's ``mcpu``."""

    name = "arm"
    isa = "neon"
    vector_width = VECTOR_WIDTH
    acc_registers = ACC_REGISTERS
    table: ClassVar[Table] = VARIANTS
    sparse_conv = True  # the shared conv templates, with the NEON vector width
    runner_hint = "`sparsec run` runs ARM artifacts under qemu-aarch64"
    schedule_note = " (NEON schedules)"
    compile_note = ", aarch64"
    foreign_ort = "ORT for aarch64"
    int8_needs = "a --cpu with int8 dot products, e.g. cortex-a76 or neoverse-n1"

    def __init__(self, cpu: str = "") -> None:
        self.cpu = cpu
        self._progress: Progress = quiet  # the compile's, reused by run_artifact for one-time builds

    @classmethod
    def from_options(cls, cpu: str = "", arch: str = "") -> Target:
        if arch:
            raise SparsecError("--arch applies to --target cuda only (arm takes --cpu)")
        target = cls(cpu)
        if cpu:
            target.check_cpu()  # before any work; imports TVM only when a CPU is named
        return target

    @classmethod
    def from_manifest(cls, info: dict[str, Any]) -> Target:
        cpu = str(info.get("cpu", ""))
        return cls("" if cpu == "generic" else cpu)

    def check_cpu(self) -> None:
        """A one-line error for a CPU name LLVM does not know (TVM itself would only warn and use generic)."""
        if self.cpu and self.cpu not in known_cpus():
            close = [c for c in known_cpus() if c.split("-")[0] == self.cpu.split("-")[0]][:8]
            hint = f" (e.g. {', '.join(close)})" if close else " (e.g. cortex-a76, neoverse-n1, apple-m4)"
            raise SparsecError(f"unknown --cpu {self.cpu!r} for --target arm{hint}")

    @property
    def int8_kernels(self) -> bool:
        """The --cpu has Armv8.2 int8 dot products (sdot/udot); the generic build assumes none."""
        return bool(self.cpu) and self.cpu in known_cpus() and "dotprod" in cpu_features(self.cpu)

    @property
    def int8_dot(self) -> bool:  # type: ignore[override]
        """ORT's aarch64 int8 GEMM uses udot/sdot on such a core (MLAS's dot-product kernels) as on x86 VNNI."""
        return self.int8_kernels

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

    def build(self, kernels: list[Kernel], out_path: Path, progress: Progress = quiet) -> None:
        self.check_cpu()
        super().build(kernels, out_path, progress)

    def export(self, lib: Any, kernels: list[Kernel], out_path: Path, progress: Progress) -> None:
        """Link an aarch64 shared object with the cross compiler."""
        from tvm.support import cc

        lib.export_library(str(out_path), fcompile=cc.cross_compiler(cross_cxx()))
        progress(f"wrote {out_path.name} (aarch64)")

    def bundle(self, folder: Path, progress: Progress = quiet) -> None:
        """Copy the aarch64 EP and the TVM runtime libraries it needs into the artifact folder."""
        from .ep import aarch64_ep
        from .wheels import aarch64_libs

        self._progress = progress
        libs = aarch64_libs(progress)
        shutil.copy2(aarch64_ep(progress), folder / EP_FILE)
        shutil.copy2(libs.tvm_runtime, folder / "libtvm_runtime.so")
        shutil.copy2(libs.tvm_ffi, folder / "libtvm_ffi.so")

    def cannot_take(self, model: Any) -> str:
        """Non-tensor graph inputs (ai.onnx.ml sequences and maps): the ARM host app reads its inputs from .npy
        files (non-tensor outputs it writes as JSON)."""
        from ..base import non_tensor_value

        value = non_tensor_value(model, outputs=False)
        why = "the aarch64 host app (examples/arm_host) takes only tensor inputs"
        return f"{value} is not a tensor; {why} (--target x86 runs such models)" if value else ""

    def cannot_run(self) -> str:
        """Why this host cannot run the artifact ("" when qemu-aarch64 can)."""
        return qemu_missing()

    def cannot_tune(self) -> str:
        return "not available for --target arm (kernels are timed on this host; ARM code runs here only under qemu)"

    def run_artifact(self, artifact: Path, feeds: dict[str, np.ndarray]) -> list[Any]:
        from .qemu import run_artifact

        return run_artifact(artifact, feeds, cpu=self.cpu, progress=self._progress)
