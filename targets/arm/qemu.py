"""Run an ARM artifact on this x86 host: the example app (examples/arm_host) cross-built for aarch64 and run under
``qemu-aarch64`` with Debian's aarch64 sysroot, exactly as an app on a phone or board would run it (ORT + the
artifact's EP, TVM runtime and kernels), just emulated.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sparsec.errors import SparsecError
from sparsec.ml_values import from_json
from sparsec.runtime import build_ep as host_ep

from .toolchain import QEMU, REPO_ROOT, SYSROOT, TOOLCHAIN_FILE, cache_dir, cross_cxx, qemu_missing
from .wheels import aarch64_libs

HOST_SOURCES = REPO_ROOT / "examples" / "arm_host"
RUN_TIMEOUT_S = 600


def _host_key(libs_name: str) -> str:
    h = hashlib.sha256(libs_name.encode())
    for src in sorted(HOST_SOURCES.iterdir()):
        if src.is_file():
            h.update(src.name.encode() + b"\0" + src.read_bytes())
    h.update(TOOLCHAIN_FILE.read_bytes())
    return h.hexdigest()[:16]


def example_host(progress: Callable[[str], None] | None = None) -> Path:
    """The aarch64 ``arm_host`` binary (cross-built once per source version with cmake + the toolchain file)."""
    if not (HOST_SOURCES / "main.cc").is_file():
        raise SparsecError(f"example host sources not found at {HOST_SOURCES} (run from a sparsec checkout)")
    cross_cxx()
    libs = aarch64_libs()
    out = cache_dir() / f"host-{_host_key(libs.folder.name)}" / "arm_host"
    if out.is_file():
        return out
    if progress is not None:
        progress("cross-building examples/arm_host, the app that runs the artifact under qemu (once)")
    cmake = host_ep._need_tool("cmake", "cross-build the example host")
    build = out.parent / "build"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    host_ep._run(
        [
            cmake,
            "-S",
            str(HOST_SOURCES),
            "-B",
            str(build),
            *generator,
            f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN_FILE}",
            f"-DORT_INCLUDE_DIR={host_ep.fetch_ort_headers()}",
            f"-DORT_LIBRARY={libs.onnxruntime}",
        ],
        "cmake configure (arm_host)",
    )
    host_ep._run([cmake, "--build", str(build), "--parallel", "2"], "cross build of examples/arm_host")
    tmp = out.with_name("arm_host.tmp")
    shutil.copy2(build / "arm_host", tmp)
    tmp.replace(out)  # atomic: a concurrent run sees the old state or the finished binary
    return out


# qemu-user 7.2 (Debian 12) shows an aarch64 guest the x86 host's /proc/cpuinfo; ORT's CPU detection (pytorch/cpuinfo)
# finds no ARM core in it and crashes with a NULL dereference before main(). qemu looks every absolute path up under
# its -L prefix first, so the prefix carries an aarch64 /proc/cpuinfo (a 2-core Cortex-A76, what `cat /proc/cpuinfo`
# prints on one) next to the Debian sysroot's lib/.
_CPU = (
    "processor\t: {i}\nBogoMIPS\t: 50.00\n"
    "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n"
)


def qemu_prefix(cores: int = 2) -> Path:
    """The folder given to ``qemu-aarch64 -L``: the aarch64 sysroot's lib/ plus an aarch64 /proc/cpuinfo."""
    prefix = cache_dir() / "qemu-prefix"
    cpuinfo = prefix / "proc" / "cpuinfo"
    text = "".join(_CPU.format(i=i) for i in range(cores))
    if not cpuinfo.is_file() or cpuinfo.read_text() != text:
        cpuinfo.parent.mkdir(parents=True, exist_ok=True)
        tmp = cpuinfo.with_name(f"cpuinfo.{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(cpuinfo)
    lib = prefix / "lib"
    if not lib.is_symlink():
        try:
            lib.symlink_to(SYSROOT / "lib")
        except FileExistsError:  # made by a concurrent run
            pass
    return prefix


# CPU models qemu-user 7.2 emulates; an artifact for another --cpu runs on "max" (every feature qemu has).
QEMU_CPUS = ("a64fx", "cortex-a35", "cortex-a53", "cortex-a57", "cortex-a72", "cortex-a76", "neoverse-n1")


def qemu_cpu(cpu: str = "") -> str:
    """The emulated core: the artifact's --cpu when qemu has it, Cortex-A76 (a common phone core, NEON without SVE,
    matching the prefix's /proc/cpuinfo) for generic artifacts, else qemu's "max"."""
    if not cpu:
        return "cortex-a76"
    return cpu if cpu in QEMU_CPUS else "max"


def qemu_command(host: Path, threads: int = 2, cpu: str = "") -> list[str]:
    """``qemu-aarch64`` with the aarch64 sysroot and the runtime libraries on the loader path."""
    libs = aarch64_libs()
    env = [f"LD_LIBRARY_PATH={libs.folder}"]
    return [QEMU, "-cpu", qemu_cpu(cpu), "-L", str(qemu_prefix()), *(x for e in env for x in ("-E", e)), str(host)]


def run_artifact(
    artifact: Path,
    feeds: dict[str, np.ndarray],
    threads: int = 2,
    qemu_args: tuple[str, ...] = (),
    repeat: int = 1,
    cpu: str = "",
    progress: Callable[[str], None] | None = None,
) -> list[Any]:
    """The artifact's outputs (model order; sequences and maps as lists and dicts) for ``feeds``, computed by the
    aarch64 app under qemu (``threads``: ORT's intra-op threads, which also run the kernels; ``qemu_args`` e.g. a
    ``-plugin``; ``repeat`` runs the model that many times; ``cpu`` the artifact's --cpu, which picks the emulated
    core)."""
    why = qemu_missing()
    if why:
        raise SparsecError(f"cannot run aarch64 code here: {why}")
    host = example_host(progress)
    with tempfile.TemporaryDirectory(prefix="sparsec-qemu-") as tmp:
        args = []
        for i, (name, value) in enumerate(feeds.items()):
            path = Path(tmp) / f"in{i}.npy"
            np.save(path, np.ascontiguousarray(value))
            args.append(f"{name}={path}")
        qemu, *rest = qemu_command(host, threads, cpu)
        flags = ["--threads", str(threads), "--repeat", str(repeat)]
        cmd = [qemu, *qemu_args, *rest, *flags, str(Path(artifact).resolve()), tmp, *args]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise SparsecError(f"the aarch64 host under qemu did not finish in {RUN_TIMEOUT_S} s") from None
        if res.returncode != 0:
            lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
            err = next((ln for ln in lines if ln.startswith("error:")), lines[-1] if lines else "no output")
            raise SparsecError(f"the aarch64 host under qemu failed (exit {res.returncode}): {err}")
        count = len(re.findall(r"^output \d+ ", res.stdout, re.MULTILINE))
        return [_read_output(Path(tmp), i) for i in range(count)]


def _read_output(folder: Path, i: int) -> Any:
    """Output ``i`` as the host app wrote it: a tensor (.npy), or a sequence or map (.json) as ORT's Python API
    returns it (list, dict)."""
    path = folder / f"{i}.json"
    if not path.is_file():
        return np.load(folder / f"{i}.npy")
    return from_json(json.loads(path.read_text()))
