"""The CUDA target: NVIDIA GPUs sm_80..sm_90, kernels generated with TVM's CUDA codegen and compiled with nvcc.

The artifact carries the device code (``kernels.fatbin``: SASS for the arch + PTX; also ``kernels.ptx``,
``kernels.cubin`` and the generated ``kernels.cu``) and ``kernels.json``, the launch metadata a host needs
(docs/internals.md, "CUDA artifact"). Nothing here needs a GPU; running does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..base import KernelSpec, Progress
from .arch import check_arch, compute_of


class CudaTarget:
    """``--target cuda [--arch sm_80|sm_86|sm_89|sm_90]``."""

    name = "cuda"
    library_name = "kernels.fatbin"
    isa = "cuda"  # the cost-model table (passes/cost_data/cuda.json)

    def __init__(self, arch: str = "") -> None:
        self.arch = check_arch(arch)

    @property
    def side_files(self) -> tuple[str, ...]:
        """Files the build writes beside the library (cached with it)."""
        from .build import SIDE_FILES

        return SIDE_FILES

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

    def build(self, specs: list[KernelSpec], out_path: Path, progress: Progress | None = None) -> None:
        from .build import build_library

        build_library(list(specs), out_path, self.arch, progress)

    def bundle(self, folder: Path, progress: Progress | None = None) -> None:
        """Nothing beyond the build's files: the EP is the host's (see the README's CUDA section)."""

    def cannot_run(self) -> str:
        """ "" on a host with an NVIDIA driver and GPU (the EP runs the kernels there), else why not."""
        from .driver import driver_problem

        return driver_problem()

    def cannot_tune(self) -> str:
        """--tune times kernels through TVM's CPU runtime; GPU timing is benchmarks/gpu_check.py's job for now."""
        return "not available for --target cuda (the tuner times kernels on the CPU); formats come from the cost model"

    def tolerance(self, specs: list[KernelSpec]) -> float | None:
        """Verification tolerance when a lossy kernel was asked for (nm:2:4 rounds its inputs to 16 bits)."""
        from .kernels import LOSSY_TOLERANCE, NM_DTYPES

        lossy = [spec.variant or next(iter(NM_DTYPES)) for spec in specs if spec.format == "nm:2:4"]
        return max((LOSSY_TOLERANCE[v] for v in lossy), default=None)

    def run_artifact(self, artifact: Path, feeds: dict[str, Any]) -> list[Any]:
        """The sparsec EP runs the kernels on the GPU (kernels.fatbin via the driver API), ORT's CPU EP the rest."""
        from sparsec.runtime import InferenceSession

        return list(InferenceSession(artifact).run(None, feeds))
