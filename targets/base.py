"""The target protocol and registry: the ONE place that dispatches on a target name.

Importing this module must stay cheap (no TVM): ``sparsec --help`` and option validation use it. Targets import
TVM lazily inside ``build``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sparsec.conv import ConvGeometry
from sparsec.errors import SparsecError
from sparsec.node import ACTIVATIONS

Progress = Callable[[str], None]


@dataclass(frozen=True)
class KernelSpec:
    """Everything a target needs to generate one sparse layer kernel (docs/internals.md, "Kernel ABI").

    With ``conv`` set the kernel is a convolution: X f32[B, C, H*W], Y (and residual) f32[B, N, OH*OW].
    ``arrays`` are the packed weight arrays as (name, shape, dtype) in the format's order, which is also the
    kernel argument order. ``variant`` optionally forces a schedule variant (e.g. chosen by measurement); empty
    means the target's default choice for the format and shape.
    """

    symbol: str
    format: str
    K: int
    N: int
    arrays: tuple[tuple[str, tuple[int, ...], str], ...]
    bias: bool = False
    residual: bool = False
    act: str = "none"
    clip_min: float = 0.0
    clip_max: float = 0.0
    variant: str = ""
    conv: ConvGeometry | None = None  # a 2-D NCHW convolution (docs/internals.md, "Convolutions"); None: matmul

    def __post_init__(self) -> None:
        if self.act not in ACTIVATIONS:
            raise SparsecError(
                f"kernel {self.symbol}: unknown activation {self.act!r} (known: {', '.join(ACTIVATIONS)})"
            )

    def array(self, name: str) -> tuple[tuple[int, ...], str]:
        """(shape, dtype) of the packed array ``name``."""
        for n, shape, dtype in self.arrays:
            if n == name:
                return shape, dtype
        raise KeyError(f"kernel {self.symbol} ({self.format}) has no packed array {name!r}")


class Target(Protocol):
    """A code-generation target: turns kernel specs into one loadable kernel library."""

    name: str
    library_name: str  # file name inside the artifact, e.g. "kernels.so"

    def describe(self) -> dict[str, Any]:
        """JSON-able facts for the manifest: kind, cpu, ISA features, vector width, TVM target JSON."""
        ...

    def supports(self, fmt: str) -> bool:
        """Whether this target has a kernel template for the format name (e.g. ``bsr:16x1``)."""
        ...

    def variants(self, fmt: str) -> list[str]:
        """The kernel variants (schedules) this target has for the format, default first (``--tune`` times them)."""
        ...

    def build(self, specs: list[KernelSpec], out_path: Path, progress: Progress | None = None) -> None:
        """Generate every kernel into ONE library at ``out_path`` (deterministic for equal specs)."""
        ...

    def bundle(self, folder: Path, progress: Progress | None = None) -> None:
        """Put the runtime files an app needs besides model.onnx and the kernels into the artifact ``folder``."""
        ...

    def cannot_run(self) -> str:
        """Why this host cannot run the target's artifacts for verification; "" when it can."""
        ...

    def run_artifact(self, artifact: Path, feeds: dict[str, Any]) -> list[Any]:
        """The artifact's outputs (in model order) on ``feeds``, run on this host (natively or emulated)."""
        ...


def _x86(cpu: str, arch: str) -> Target:
    from .x86.target import X86Target

    if arch:
        raise SparsecError("--arch applies to --target cuda only")
    if cpu:
        raise SparsecError("--cpu applies to --target arm only (x86 builds for this host's CPU)")
    return X86Target()


def _arm(cpu: str, arch: str) -> Target:
    from .arm.target import ArmTarget

    if arch:
        raise SparsecError("--arch applies to --target cuda only (arm takes --cpu)")
    target = ArmTarget(cpu)
    if cpu:
        target.check_cpu()  # before any work; imports TVM only when a CPU is named
    return target


def _wasm(cpu: str, arch: str) -> Target:
    from .wasm.target import WasmTarget

    if arch:
        raise SparsecError("--arch applies to --target cuda only")
    if cpu:
        raise SparsecError("--cpu applies to --target arm only (wasm builds generic wasm32 + SIMD128)")
    return WasmTarget()


def _cuda(cpu: str, arch: str) -> Target:
    from .cuda.target import CudaTarget

    if cpu:
        raise SparsecError("--cpu applies to --target arm only (cuda takes --arch)")
    return CudaTarget(arch)  # checks the arch name; no TVM import


_TARGETS: dict[str, Callable[[str, str], Target]] = {"x86": _x86, "arm": _arm, "wasm": _wasm, "cuda": _cuda}


def known_targets() -> list[str]:
    """Names accepted by ``get_target``."""
    return sorted(_TARGETS)


def get_target(name: str, cpu: str = "", arch: str = "") -> Target:
    """The target called ``name`` (for ``cpu`` / GPU ``arch``, "" = the target's default); unknown names, CPUs or
    archs raise a one-line SparsecError listing the known ones."""
    try:
        factory = _TARGETS[name]
    except KeyError:
        raise SparsecError(f"unknown target {name!r} (known targets: {', '.join(known_targets())})") from None
    return factory(cpu, arch)
