"""Whether this host can run CUDA code: an NVIDIA driver (libcuda.so.1) with at least one GPU. Cheap; no TVM."""

from __future__ import annotations

import ctypes
from functools import cache


@cache
def driver_problem() -> str:
    """ "" when libcuda.so.1 loads and reports a GPU; otherwise why not (one line)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver (libcuda.so.1) was found"
    if cuda.cuInit(0) != 0:
        return "the NVIDIA driver (libcuda.so.1) failed to initialize (no GPU?)"
    count = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return "the NVIDIA driver reports no GPU"
    return ""


def refuse(arch: str) -> str:
    """The one-line reason a CUDA artifact for ``arch`` cannot run in-process on this host ("" when it can)."""
    problem = driver_problem()
    return f"this artifact targets CUDA {arch} but {problem}" if problem else ""
