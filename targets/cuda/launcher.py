"""A minimal CUDA host through the driver API (ctypes, libcuda.so.1): load the artifact's fatbin, upload arrays,
launch a kernel as ``kernels.json`` describes it. The reference host for sparsec's CUDA kernels (benchmarks/
gpu_check.py uses it; the EP's CUDA path will do the same in C++). Needs an NVIDIA GPU and driver; nothing here
runs on a machine without one (``driver.driver_problem`` says why first).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsec.errors import SparsecError

_CC_MAJOR, _CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_{MAJOR,MINOR}


@dataclass
class DeviceArray:
    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


class Driver:
    """Device 0's primary context, made current on construction."""

    def __init__(self) -> None:
        try:
            self.lib = ctypes.CDLL("libcuda.so.1")
        except OSError as e:
            raise SparsecError("no NVIDIA driver (libcuda.so.1) was found") from e
        self._check(self.lib.cuInit(0), "cuInit")
        self.device = ctypes.c_int(0)
        self._check(self.lib.cuDeviceGet(ctypes.byref(self.device), 0), "cuDeviceGet")
        self.context = ctypes.c_void_p()
        self._check(
            self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(self.context), self.device), "cuDevicePrimaryCtxRetain"
        )
        self._check(self.lib.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")

    def _check(self, result: int, what: str) -> None:
        if result != 0:
            msg = ctypes.c_char_p()
            self.lib.cuGetErrorString(result, ctypes.byref(msg))
            raise SparsecError(f"{what} failed: CUDA error {result} ({(msg.value or b'?').decode()})")

    def compute_capability(self) -> tuple[int, int]:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, self.device), "cuDeviceGetAttribute")
        self._check(self.lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, self.device), "cuDeviceGetAttribute")
        return major.value, minor.value

    def load(self, image: bytes) -> ctypes.c_void_p:
        """A module from a fatbin / cubin / PTX image (the driver JIT-compiles PTX for newer GPUs)."""
        module = ctypes.c_void_p()
        buf = ctypes.create_string_buffer(image + b"\0")  # PTX text must end in NUL; harmless for binaries
        self._check(self.lib.cuModuleLoadData(ctypes.byref(module), buf), "cuModuleLoadData")
        return module

    def function(self, module: ctypes.c_void_p, name: str) -> ctypes.c_void_p:
        fn = ctypes.c_void_p()
        self._check(
            self.lib.cuModuleGetFunction(ctypes.byref(fn), module, name.encode()), f"cuModuleGetFunction {name}"
        )
        return fn

    def upload(self, a: np.ndarray) -> DeviceArray:
        a = np.ascontiguousarray(a)
        ptr = ctypes.c_uint64()
        self._check(self.lib.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(max(a.nbytes, 4))), "cuMemAlloc")
        if a.nbytes:
            self._check(
                self.lib.cuMemcpyHtoD_v2(ptr, a.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(a.nbytes)),
                "cuMemcpyHtoD",
            )
        return DeviceArray(ptr.value, tuple(a.shape), a.dtype)

    def empty(self, shape: tuple[int, ...], dtype: Any = np.float32) -> DeviceArray:
        return self.upload(np.zeros(shape, dtype))

    def download(self, d: DeviceArray) -> np.ndarray:
        out = np.empty(d.shape, d.dtype)
        if out.nbytes:
            self._check(
                self.lib.cuMemcpyDtoH_v2(
                    out.ctypes.data_as(ctypes.c_void_p), ctypes.c_uint64(d.ptr), ctypes.c_size_t(out.nbytes)
                ),
                "cuMemcpyDtoH",
            )
        return out

    def free(self, d: DeviceArray) -> None:
        self.lib.cuMemFree_v2(ctypes.c_uint64(d.ptr))

    def launch(
        self, fn: ctypes.c_void_p, grid: tuple[int, int, int], block: tuple[int, int, int], args: list[Any]
    ) -> None:
        """``args``: DeviceArray (passed as a device pointer) or int (passed as int64, the row count M)."""
        values, params = pack_params(args)
        self._check(
            self.lib.cuLaunchKernel(
                fn,
                *[ctypes.c_uint(v) for v in grid],
                *[ctypes.c_uint(v) for v in block],
                ctypes.c_uint(0),
                None,
                params,
                None,
            ),
            "cuLaunchKernel",
        )
        del values  # kept alive until the launch has read them

    def synchronize(self) -> None:
        self._check(self.lib.cuCtxSynchronize(), "cuCtxSynchronize")


def pack_params(args: list[Any]) -> tuple[list[Any], Any]:
    """cuLaunchKernel's ``kernelParams``: one pointer per argument to its value (u64 device pointer or int64 M);
    returns the values too, which must stay alive until the launch."""
    values = [ctypes.c_uint64(a.ptr) if isinstance(a, DeviceArray) else ctypes.c_int64(int(a)) for a in args]
    params = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
    return values, params


def kernel_args(meta: dict[str, Any], arrays: dict[str, DeviceArray], m: int) -> list[Any]:
    """The launch arguments in the entry's parameter order (kernels.json ``params``): device arrays by ABI name
    (X, packed arrays, bias, residual, Y) and the row count M."""
    out: list[Any] = []
    for name in meta["params"]:
        if name == "M":
            out.append(m)
        elif name in arrays:
            out.append(arrays[name])
        else:
            raise SparsecError(f"{meta['entry']}: no array for parameter {name!r}")
    return out


def grid_of(meta: dict[str, Any], m: int) -> tuple[int, int, int]:
    return (-(-m // int(meta["rows_per_block"])), int(meta["grid_y"]), 1)
