"""nvcc: find it, compile CUDA source to PTX / cubin / fatbin, and read ptxas's resource report.

nvcc is looked up as ``$SPARSEC_NVCC``, then on PATH, then under ``$CUDA_HOME/bin`` and ``/usr/local/cuda/bin``.
Nothing here needs a GPU or a driver.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from sparsec.errors import SparsecError

from .arch import compute_of

# TVM's generated source declares helpers it may not use and prints float constants in hex: quiet those warnings.
QUIET = "-diag-suppress=177,550,1046"
_RESOURCE = re.compile(
    r"Compiling entry function '(?P<name>\w+)' for '(?P<arch>sm_\d+a?)'.*?"
    r"(?P<stack>\d+) bytes stack frame, (?P<spill_st>\d+) bytes spill stores, (?P<spill_ld>\d+) bytes spill loads.*?"
    r"Used (?P<regs>\d+) registers(?P<rest>[^\n]*)",
    re.S,
)


@dataclass(frozen=True)
class Resources:
    """ptxas's report for one kernel entry."""

    kernel: str
    arch: str
    registers: int
    stack_bytes: int  # local memory (lmem) per thread
    spill_stores: int
    spill_loads: int
    smem_bytes: int

    @property
    def clean(self) -> bool:
        """No local memory and no spills."""
        return self.stack_bytes == 0 and self.spill_stores == 0 and self.spill_loads == 0


@cache
def find_nvcc() -> str:
    """Path of nvcc, or "" when none is installed."""
    for cand in (os.environ.get("SPARSEC_NVCC", ""), shutil.which("nvcc") or ""):
        if cand and os.access(cand, os.X_OK):
            return cand
    for home in (os.environ.get("CUDA_HOME", ""), "/usr/local/cuda"):
        cand = os.path.join(home, "bin", "nvcc") if home else ""
        if cand and os.access(cand, os.X_OK):
            return cand
    return ""


def need_nvcc() -> str:
    nvcc = find_nvcc()
    if not nvcc:
        raise SparsecError(
            "--target cuda needs nvcc (the CUDA toolkit) to compile device code: install it or set SPARSEC_NVCC"
        )
    return nvcc


@cache
def nvcc_version() -> str:
    """``release X.Y`` of the nvcc found ("missing" when none)."""
    nvcc = find_nvcc()
    if not nvcc:
        return "missing"
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else "unknown"


def compile_source(source: str, arch: str, kind: str, extra: tuple[str, ...] = ()) -> tuple[bytes, str]:
    """Compile ``source`` for ``arch`` to ``kind`` (ptx, cubin or fatbin); returns (bytes, nvcc's stderr).

    fatbin holds the SASS for ``arch`` and the PTX of its virtual architecture (the driver JIT-compiles that PTX
    on newer GPUs); ptx is for ``compute_XX`` only; cubin is SASS only.
    """
    nvcc = need_nvcc()
    real, virtual = arch.removeprefix("sm_"), compute_of(arch).removeprefix("compute_")
    if kind == "ptx":
        arch_flags = [f"-arch=compute_{virtual}"]
    elif kind == "cubin":
        arch_flags = [f"-arch=sm_{real}"]
    elif kind == "fatbin":
        arch_flags = [f"-gencode=arch=compute_{virtual},code=[sm_{real},compute_{virtual}]"]
    else:
        raise ValueError(f"unknown nvcc output kind {kind!r}")
    with tempfile.TemporaryDirectory(prefix="sparsec-nvcc-") as tmp:
        src = Path(tmp) / "kernels.cu"
        out = Path(tmp) / f"kernels.{kind}"
        src.write_text(source)
        cmd = [nvcc, f"--{kind}", *arch_flags, "-O3", QUIET, *extra, "-o", str(out), str(src)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            tail = " | ".join(line for line in r.stderr.strip().splitlines()[-3:])
            raise SparsecError(f"nvcc --{kind} for {arch} failed: {tail[:400]}")
        return out.read_bytes(), r.stderr


def resource_usage(source: str, arch: str) -> tuple[bytes, list[Resources]]:
    """The cubin for ``arch`` and ptxas's report (registers, local memory, spills, shared memory) per kernel."""
    cubin, log = compile_source(source, arch, "cubin", ("-Xptxas", "-v"))
    out = []
    for m in _RESOURCE.finditer(log):
        smem = re.search(r"(\d+) bytes smem", m.group("rest"))
        out.append(
            Resources(
                kernel=m.group("name"),
                arch=m.group("arch"),
                registers=int(m.group("regs")),
                stack_bytes=int(m.group("stack")),
                spill_stores=int(m.group("spill_st")),
                spill_loads=int(m.group("spill_ld")),
                smem_bytes=int(smem.group(1)) if smem else 0,
            )
        )
    return cubin, out


def fatbin_entries(data: bytes) -> list[tuple[str, int]]:
    """(kind, arch) of every entry of a fatbin: kind "sass" (an ELF cubin) or "ptx"; arch 90 for sm_90 / compute_90.

    Layout (the fatbin container nvcc writes): a 16-byte header (magic 0xBA55ED50, version, header size, payload
    size), then entries, each a header (kind u16: 1 PTX, 2 ELF; header size u32 at +4; payload size u64 at +8;
    arch u32 at +28) followed by its payload.
    """
    import struct

    magic, _, head, size = struct.unpack_from("<IHHQ", data, 0)
    if magic != 0xBA55ED50:
        raise ValueError("not a fatbin (bad magic)")
    out, off = [], head
    while off < head + size:
        kind, _, entry_head, payload = struct.unpack_from("<HHIQ", data, off)
        arch = struct.unpack_from("<I", data, off + 28)[0]
        out.append(({1: "ptx", 2: "sass"}.get(kind, f"kind{kind}"), arch))
        off += entry_head + payload
    return out
