"""The CUDA kernel cases the tests iterate over: every format the target has, with odd shapes and every epilogue
piece, built once into one module (one TVM codegen, one nvcc run per arch)."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from sparsec.formats import get_format
from sparsec.layer import Epilogue, Kernel
from sparsec.targets.cuda.arch import ARCHS
from sparsec.targets.cuda.toolchain import find_nvcc

needs_nvcc = pytest.mark.skipif(
    not find_nvcc(), reason="nvcc (CUDA toolkit) not found: install it or set SPARSEC_NVCC to check device code"
)

# (format, variant, K, N, epilogue): K/N not multiples of the tiles; a K too large to stage one X row for csr.
CASES: tuple[tuple[str, str, int, int, dict[str, object]], ...] = (
    ("csr", "", 200, 90, {"bias": True, "act": "gelu"}),
    ("csr", "", 13000, 8, {"residual": True}),
    ("bsr:16x1", "", 768, 100, {"bias": True, "residual": True, "act": "relu"}),
    ("bsr:4x4", "", 130, 36, {"act": "silu"}),
    ("bsr:1x16", "", 96, 20, {"act": "sigmoid"}),
    ("bsr:32x2", "", 9000, 64, {"act": "hardswish"}),
    ("nm:2:4", "f16", 200, 90, {"bias": True, "act": "gelu"}),
    ("nm:2:4", "bf16", 72, 40, {"residual": True, "act": "clip", "clip_min": 0.0, "clip_max": 6.0}),
)


def weight(fmt: str, k: int, n: int, seed: int = 0, density: float = 0.1) -> np.ndarray:
    """A random weight that fits ``fmt`` (2 of every 4 inputs for nm:2:4, ``density`` of the blocks for bsr)."""
    f = get_format(fmt)
    return f.random(n, k, 1.0 if f.family == "nm" else density, np.random.default_rng(seed))


def spec_of(i: int, fmt: str, variant: str, k: int, n: int, epi: dict[str, object]) -> Kernel:
    f = get_format(fmt)
    packed = f.pack(weight(fmt, k, n, i))
    epilogue = Epilogue(**epi)  # type: ignore[arg-type]
    return Kernel(f"k{i}", fmt, k, n, tuple(f.array_specs(packed)), epilogue=epilogue, variant=variant, packed=packed)


def specs() -> list[Kernel]:
    return [spec_of(i, *case) for i, case in enumerate(CASES)]


@cache
def generated() -> tuple[str, tuple[object, ...]]:
    """(CUDA source, launches) of all CASES. TVM's CUDA source does not depend on the arch for these kernels
    (no arch-specific intrinsics are chosen by TVM), so one codegen serves every arch; nvcc runs per arch."""
    from sparsec.targets.cuda.build import generate

    source, launches = generate(specs(), "sm_80")
    return source, tuple(launches)


__all__ = ["ARCHS", "CASES", "generated", "needs_nvcc", "spec_of", "specs", "weight"]
