"""The EP given a CUDA artifact's kernel library (a fatbin): one clear line at session creation, naming the missing
NVIDIA driver when there is none (the EP's CUDA launch path is future work: README, "CUDA")."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import Weights
from .ep_models import mlp_model


def has_driver() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def test_cuda_kernel_library_is_refused_in_one_line(
    tmp_path: Path, weights: Weights, make_session: Callable[..., Any]
) -> None:
    model = mlp_model(tmp_path / "m.onnx", weights)
    fatbin = tmp_path / "kernels.fatbin"
    fatbin.write_bytes(b"\x50\xed\x55\xba" + bytes(60))
    with pytest.raises(Exception) as e:
        make_session(model, kernel_library=str(fatbin))
    msg = str(e.value)
    assert "sparsec: this artifact targets CUDA" in msg
    if not has_driver():
        assert "no NVIDIA driver (libcuda.so.1) was found" in msg
    line = next(line for line in msg.splitlines() if "targets CUDA" in line)
    assert line.count("sparsec: this artifact targets CUDA") == 1
