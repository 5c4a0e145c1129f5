"""The x86 target: host CPU detection (AVX-512 or AVX2), the TVM llvm target, and the build entry point."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from ..base import KernelSpec, Progress


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


class X86Target:
    """x86-64 via TVM's llvm backend for the build host's CPU (never ``native``: TVM maps it to ``generic``)."""

    name = "x86"
    library_name = "kernels.so"
    sparse_conv = True  # has conv kernels (targets without this attribute keep Conv layers dense)

    @cached_property
    def isa(self) -> str:
        """The widest vector ISA the kernels use: avx512, avx2 or sse."""
        flags = cpu_flags()
        if "avx512f" in flags:
            return "avx512"
        if "avx2" in flags and "fma" in flags:
            return "avx2"
        return "sse"

    @property
    def vector_width(self) -> int:
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
        """The TVM target as a JSON dict (string flags are rejected by TVM 0.27)."""
        return {"kind": "llvm", "mcpu": self.mcpu}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cpu": self.mcpu,
            "isa": self.isa,
            "vector_width": self.vector_width,
            "features": sorted(f for f in cpu_flags() if f.startswith(("avx", "fma", "sse4"))),
            "llvm_target": self.llvm_target(),
        }

    def supports(self, fmt: str) -> bool:
        from .manifest import variants_for

        return bool(variants_for(fmt, self.vector_width))

    def variants(self, fmt: str) -> list[str]:
        from .manifest import variants_for

        return [v.name for v in variants_for(fmt, self.vector_width)]

    def build(self, specs: list[KernelSpec], out_path: Path, progress: Progress | None = None) -> None:
        from .build import build_library

        build_library(list(specs), out_path, self.llvm_target(), self.vector_width, progress)

    def bundle(self, folder: Path, progress: Progress | None = None) -> None:
        """Nothing: on x86 the EP and TVM runtime come with the installed sparsec package."""

    def cannot_run(self) -> str:
        import platform

        machine = platform.machine()
        return "" if machine in ("x86_64", "AMD64") else f"this host is {machine}, not x86-64"

    def run_artifact(self, artifact: Path, feeds: dict[str, Any]) -> list[Any]:
        from sparsec.runtime import InferenceSession

        return list(InferenceSession(artifact).run(None, feeds))
