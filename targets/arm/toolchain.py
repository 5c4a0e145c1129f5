"""The aarch64 cross tools (Debian's gcc/g++-aarch64-linux-gnu, qemu-user) and the ARM cache folder.

Found on PATH only; ``tools/system_deps.sh`` installs them. Nothing here imports TVM.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sparsec.errors import SparsecError

CROSS_CXX = "aarch64-linux-gnu-g++"
QEMU = "qemu-aarch64"
SYSROOT = Path("/usr/aarch64-linux-gnu")  # Debian's aarch64 libc/libstdc++ for qemu's -L
REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLCHAIN_FILE = Path(__file__).with_name("aarch64.cmake")
_INSTALL_HINT = "install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user (tools/system_deps.sh does)"


def cross_cxx() -> str:
    """Path of the aarch64 C++ cross compiler, or a one-line error saying how to get it."""
    path = shutil.which(CROSS_CXX)
    if path is None:
        raise SparsecError(f"{CROSS_CXX} not found on PATH (needed for --target arm): {_INSTALL_HINT}")
    return path


def qemu_missing() -> str:
    """Why aarch64 code cannot run on this host ("" when qemu-aarch64 and the aarch64 sysroot are present)."""
    if shutil.which(QEMU) is None:
        return f"{QEMU} not found on PATH: {_INSTALL_HINT}"
    if not (SYSROOT / "lib").is_dir():
        return f"no aarch64 sysroot at {SYSROOT}: {_INSTALL_HINT}"
    return ""


def cache_dir() -> Path:
    """Downloads and cross builds for the ARM target: ``$SPARSEC_ARM_CACHE`` or ``.cache/arm`` in the checkout."""
    env = os.environ.get("SPARSEC_ARM_CACHE")
    return Path(env) if env else REPO_ROOT / ".cache" / "arm"
