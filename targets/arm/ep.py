"""Cross-build the sparsec EP for aarch64: the same sources and CMakeLists as the host EP, Debian's
aarch64-linux-gnu-g++ through a CMake toolchain file, linked against the aarch64 ``libtvm_ffi.so`` from PyPI's
aarch64 wheel, rpath ``$ORIGIN`` (the artifact ships libtvm_ffi.so beside the EP).

Built once per (EP sources, versions) into ``<cache>/ep-build`` and copied to ``<cache>/libsparsec_ep.so``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from sparsec.errors import SparsecError
from sparsec.runtime import build_ep as host_ep

from ..base import Progress
from .toolchain import TOOLCHAIN_FILE, cache_dir, cross_cxx
from .wheels import aarch64_libs


def _sources_key() -> str:
    """Digest of the EP sources, the toolchain file and the runtime versions: a change rebuilds the EP."""
    h = hashlib.sha256()
    for src in [*host_ep._sources(), TOOLCHAIN_FILE]:
        h.update(src.name.encode() + b"\0" + src.read_bytes())
    h.update(str(aarch64_libs().folder.name).encode())
    return h.hexdigest()[:16]


def _configure_and_build(build_dir: Path, ffi_lib: Path) -> Path:
    cmake = host_ep._need_tool("cmake", "cross-build the sparsec EP")
    ort_inc = host_ep.fetch_ort_headers()
    ffi_inc, _ = host_ep._tvm_ffi_paths()  # headers are architecture-neutral; same tvm-ffi version
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    host_ep._run(
        [
            cmake,
            "-S",
            str(host_ep.EP_SOURCES),
            "-B",
            str(build_dir),
            *generator,
            f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN_FILE}",
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DORT_INCLUDE_DIR={ort_inc}",
            f"-DTVM_FFI_INCLUDE_DIR={ffi_inc}",
            f"-DTVM_FFI_LIBRARY={ffi_lib}",
            "-DSPARSEC_EP_RPATH=$ORIGIN",
        ],
        "cmake configure (aarch64 EP)",
    )
    jobs = str(min(2, os.cpu_count() or 1))
    host_ep._run([cmake, "--build", str(build_dir), "--parallel", jobs], "cross build of the aarch64 sparsec EP")
    built = build_dir / "libsparsec_ep.so"
    if not built.is_file():
        raise SparsecError(f"aarch64 EP build finished but {built} is missing")
    return built


def aarch64_ep(progress: Progress | None = None) -> Path:
    """Path of the aarch64 ``libsparsec_ep.so`` (cross-built on first use and cached)."""
    cross_cxx()  # a clear error before cmake's own
    key = _sources_key()
    out = cache_dir() / f"ep-{key}" / "libsparsec_ep.so"
    if out.is_file():
        return out
    if progress is not None:
        progress("cross-building the sparsec EP for aarch64 (once per EP version)")
    libs = aarch64_libs()
    build_dir = cache_dir() / f"ep-build-{key}"  # per key: two compiles at once never share a cmake tree
    built = _configure_and_build(build_dir, libs.tvm_ffi)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".so.tmp")
    shutil.copy2(built, tmp)
    os.replace(tmp, out)
    return out
