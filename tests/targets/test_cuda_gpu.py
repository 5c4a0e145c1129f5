"""On a machine with an NVIDIA GPU: every CUDA kernel format against float64 through the driver-API launcher
(benchmarks/gpu_check.py's check on small layers). Skipped, with the reason, everywhere else."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from sparsec.targets.cuda.driver import driver_problem
from sparsec.targets.cuda.launcher import DeviceArray, grid_of, kernel_args, pack_params
from sparsec.targets.cuda.toolchain import find_nvcc

gpu = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(
    bool(driver_problem()) or not find_nvcc(), reason=f"needs an NVIDIA GPU and nvcc: {driver_problem() or 'no nvcc'}"
)


def test_launch_arguments_follow_kernels_json() -> None:
    """Runs anywhere: the parameter order and the pointer array cuLaunchKernel reads."""
    meta = {"entry": "k_kernel", "params": ["X", "Y", "bias", "values", "M"], "grid_y": 3, "rows_per_block": 32}
    arrays = {
        n: DeviceArray(0x1000 * (i + 1), (1,), np.dtype(np.float32)) for i, n in enumerate(["X", "Y", "bias", "values"])
    }
    args = kernel_args(meta, arrays, 70)
    assert [a.ptr if isinstance(a, DeviceArray) else a for a in args] == [0x1000, 0x2000, 0x3000, 0x4000, 70]
    values, params = pack_params(args)
    assert [ctypes.c_uint64.from_address(params[i]).value for i in range(4)] == [0x1000, 0x2000, 0x3000, 0x4000]
    assert ctypes.c_int64.from_address(params[4]).value == 70
    assert grid_of(meta, 70) == (3, 3, 1)  # (ceil(70 / 32), grid_y, 1)
    with pytest.raises(Exception, match="no array for parameter 'values'"):
        kernel_args(meta, {k: v for k, v in arrays.items() if k != "values"}, 1)


@gpu
@needs_gpu
def test_every_format_matches_float64_on_the_gpu() -> None:
    from benchmarks.gpu_check import check

    layers = (
        ("csr", "", 96, 200, 0.1),
        ("bsr:16x1", "", 100, 768, 0.2),
        ("bsr:4x4", "", 36, 130, 0.3),
        ("nm:2:4", "f16", 90, 200, 0.5),
        ("nm:2:4", "bf16", 40, 72, 0.5),
    )
    rows = check(seed=0, reps=2, rows=(1, 33), layers=layers)
    bad = [r for r in rows if not r.ok]
    assert not bad, bad


@gpu
@needs_gpu
def test_compiled_model_verifies_through_the_ep_on_the_gpu(tmp_path: Path) -> None:
    """`sparsec compile --target cuda` verifies on a GPU host: the EP runs the kernels, ORT's CPU EP the rest."""
    import onnx

    from benchmarks.gpu_check import build_arch
    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions
    from sparsec.targets.cuda.launcher import Driver
    from tests.targets.arm_models import for_format, mlp

    arch = build_arch(Driver().compute_capability())
    for fmt in ("csr", "bsr:4x4"):
        model = tmp_path / f"{fmt.replace(':', '_')}.onnx"
        onnx.save(for_format(mlp(), fmt), str(model))
        result = compile_model(
            model, tmp_path / f"{model.stem}.sparsec", CompileOptions(target="cuda", arch=arch, format=fmt, verify=True)
        )
        assert result.errors and max(result.errors.values()) < 1e-4 and not result.unverified
