"""The CUDA target: NVIDIA GPUs sm_80..sm_90, kernels generated with TVM's CUDA codegen and compiled with nvcc.

The artifact carries the device code (``kernels.fatbin``: SASS for the arch + PTX; also ``kernels.ptx``,
``kernels.cubin`` and the generated ``kernels.cu``) and ``kernels.json``, the launch metadata a host needs
(docs/internals.md, "CUDA artifact"). Nothing here needs a GPU; running does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparsec.errors import SparsecError
from sparsec.layer import Kernel

from ..base import Progress, Target, quiet
from .arch import check_arch, compute_of
from .build import SIDE_FILES


class CudaTarget(Target):
    """``--target cuda [--arch sm_80|sm_86|sm_89|sm_90]``."""

    name = "cuda"
    library_name = "kernels.fatbin"
    side_files = SIDE_FILES
    isa = "cuda"  # the cost-model table (passes/cost_data/cuda.json)

    def __init__(self, arch: str = "") -> None:
        self.arch = check_arch(arch)

    @classmethod
    def from_options(cls, cpu: str = "", arch: str = "") -> Target:
        if cpu:
            raise SparsecError("--cpu applies to --target arm only (cuda takes --arch)")
        return cls(arch)  # checks the arch name; no TVM import

    @classmethod
    def from_manifest(cls, info: dict[str, Any]) -> Target:
        return cls(str(info.get("arch", "")))

    def describe(self) -> dict[str, Any]:
        from .toolchain import nvcc_version

        return {
            "name": self.name,
            "arch": self.arch,
            "ptx_arch": compute_of(self.arch),
            "isa": self.isa,
            "nvcc": nvcc_version(),
            "device_files": ["kernels.fatbin", "kernels.ptx", "kernels.cubin", "kernels.cu"],
            "launch_metadata": "kernels.json",
            "ep_launch_table": "kernels.launch",
        }

    def supports(self, fmt: str) -> bool:
        from .kernels import supported

        return supported(fmt)

    def variants(self, fmt: str) -> list[str]:
        from .kernels import variants

        return variants(fmt)

    def build(self, kernels: list[Kernel], out_path: Path, progress: Progress = quiet) -> None:
        from .build import build_library

        build_library(list(kernels), out_path, self.arch, progress)

    def tolerance(self, kernels: list[Kernel]) -> float | None:
        """Verification tolerance when a lossy kernel was asked for (nm:2:4 rounds its inputs to 16 bits)."""
        from .kernels import LOSSY_TOLERANCE, NM_DTYPES

        lossy = [k.variant or next(iter(NM_DTYPES)) for k in kernels if k.format == "nm:2:4"]
        return max((LOSSY_TOLERANCE[v] for v in lossy), default=None)

    def cannot_run(self) -> str:
        """ "" on a host with an NVIDIA driver and GPU (the EP runs the kernels there), else why not."""
        from .driver import driver_problem

        return driver_problem()

    def cannot_tune(self) -> str:
        """--tune times kernels through TVM's CPU runtime; GPU timing is benchmarks/gpu_check.py's job for now."""
        return "not available for --target cuda (the tuner times kernels on the CPU); formats come from the cost model"

    def session_problem(self) -> str:
        """The EP runs CUDA artifacts on the GPU through the driver: one line when there is none."""
        from .driver import refuse

        why = refuse(self.arch)
        return f"sparsec: {why}" if why else ""
