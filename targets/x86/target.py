"""The x86 target: host CPU detection (AVX-512, AVX2 or SSE), the TVM llvm target and the x86 kernel table."""

from __future__ import annotations

import platform
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from ..simd.table import Table, Variant, variant_table
from ..simd.target import SimdTarget

ACC_REGISTERS = 8  # vector accumulators per tile: enough independent FMA chains, leaves registers for operands
# split 4: four partial sums of 2 vectors per output row (8 FMA chains, tiles of 32 rows of X): of
# split 1 / 2 / 4 (issue 14, csr 90%, M=128) the best where K is large (1536x384: 1.17x / 1.88x / 2.20x of ORT).
# int8:1x4 (integer layers): vpdpbusd on 16 int32 lanes, 4 vectors of tokens per tile (templates/int8.py); only
# where the CPU has AVX-512 VNNI (X86Target.int8_kernels).
# LLVM's SLP vectorizer packs the csr/bsr kernels' unrolled index loads into one vector load whose lanes are then
# moved back to general registers (vpextrd, two uops each) to form addresses; without it each index is one scalar
# load. Same-process A/B on AMD EPYC Zen 4 (issue 14): csr 90% M=1024 1758 -> 1491 us (384x1536), 1968 -> 1768 us
# (1536x384); M=1 21 -> 16 and 20 -> 12 us; bsr 16x1 M=1024 638 -> 591, 916 -> 783 us. The templates vectorize
# explicitly (T.vectorized), so nothing else depends on it. Per target: TVM sets and restores cl-opt around codegen.
LLVM_OPTIONS = ("-vectorize-slp=false",)
VARIANTS = variant_table(ACC_REGISTERS, rows_vectors=2, rows_mu_cap=8, split=4) + (
    Variant("int8", "vnni", lambda f, vw: vw == 16, lambda f, vw: 4),
)


def cpu_flags() -> set[str]:
    """The host's /proc/cpuinfo flags (empty when unreadable, e.g. not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


class X86Target(SimdTarget):
    """x86-64 via TVM's llvm backend for the build host's CPU (never ``native``: TVM maps it to ``generic``)."""

    name = "x86"
    sparse_conv = True
    acc_registers = ACC_REGISTERS
    table: ClassVar[Table] = VARIANTS
    int8_needs = "AVX-512 VNNI and a CPU LLVM names"

    @classmethod
    def cpu_note(cls) -> str:
        return "this host's CPU"

    @cached_property
    def isa(self) -> str:  # type: ignore[override]
        """The widest vector ISA the kernels use: avx512, avx2 or sse."""
        flags = cpu_flags()
        if "avx512f" in flags:
            return "avx512"
        if "avx2" in flags and "fma" in flags:
            return "avx2"
        return "sse"

    @cached_property
    def int8_kernels(self) -> bool:
        """AVX-512 VNNI on this CPU and a named LLVM cpu (the generic x86-64-v4 level has no VNNI)."""
        return "avx512_vnni" in cpu_flags() and self.isa == "avx512" and not self.mcpu.startswith("x86-64")

    @cached_property
    def int8_dot(self) -> bool:  # type: ignore[override]
        """AVX-512 VNNI or AVX-VNNI: ORT's u8s8 kernels use vpdpbusd (2.9x its float32 MatMul, not 1.7x)."""
        return bool({"avx512_vnni", "avx_vnni"} & set(cpu_flags()))

    @property
    def vector_width(self) -> int:  # type: ignore[override]
        """float32 lanes per vector register."""
        return {"avx512": 16, "avx2": 8, "sse": 4}[self.isa]

    @cached_property
    def mcpu(self) -> str:
        import tvm

        name = str(tvm.get_global_func("tvm.codegen.llvm.GetHostCPUName")())
        if name in ("", "generic"):  # unknown CPU: a baseline level that still matches the detected ISA
            return {"avx512": "x86-64-v4", "avx2": "x86-64-v3", "sse": "x86-64"}[self.isa]
        return name

    def llvm_target(self) -> dict[str, Any]:
        return {"kind": "llvm", "mcpu": self.mcpu, "cl-opt": list(LLVM_OPTIONS)}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cpu": self.mcpu,
            "isa": self.isa,
            "vector_width": self.vector_width,
            "features": sorted(f for f in cpu_flags() if f.startswith(("avx", "fma", "sse4"))),
            "llvm_target": self.llvm_target(),
        }

    def cannot_run(self) -> str:
        machine = platform.machine()
        return "" if machine in ("x86_64", "AMD64") else f"this host is {machine}, not x86-64"

    def session_problem(self) -> str:
        return "" if not self.cannot_run() else super().session_problem()
