"""Link TVM's wasm32 kernel object with sparsec's C driver into ``kernels.wasm`` (Debian's emcc).

The driver (``driver.c``) does not depend on the model: it is compiled once per driver source, emcc version and
tvm-ffi headers and kept in ``<cache>/driver-<hash>.o``. The output is a standalone wasm module (no emscripten JS
glue): it exports its memory, the driver's ``sc_*`` functions and one ``__tvm_ffi_<symbol>`` per kernel, and imports
only ``env.emscripten_notify_memory_growth``.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from sparsec.errors import SparsecError

from .toolchain import cache_dir, emcc, node_env

DRIVER_SOURCE = Path(__file__).with_name("driver.c")
DRIVER_EXPORTS = ("sc_alloc", "sc_free", "sc_pack", "sc_result", "sc_last_error")
LINK_FLAGS = (
    "-O2",
    "--no-entry",
    "-sSTANDALONE_WASM",
    "-sALLOW_MEMORY_GROWTH=1",
    "-sERROR_ON_UNDEFINED_SYMBOLS=1",
    "-msimd128",
)


def _run(cmd: list[str], what: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=node_env())
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        raise SparsecError(f"{what} failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
    return proc.stdout


def emcc_version() -> str:
    return _run([emcc(), "--version"], "emcc --version").splitlines()[0]


def driver_object() -> Path:
    """The compiled driver (built once per source, compiler and headers; cached)."""
    import tvm_ffi.libinfo

    include = tvm_ffi.libinfo.find_include_path()
    header = Path(include) / "tvm" / "ffi" / "c_api.h"
    digest = hashlib.sha256(DRIVER_SOURCE.read_bytes() + header.read_bytes() + emcc_version().encode()).hexdigest()
    out = cache_dir() / f"driver-{digest[:16]}.o"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp.o")
        _run([emcc(), "-O2", "-msimd128", f"-I{include}", "-c", str(DRIVER_SOURCE), "-o", str(tmp)], "emcc (driver)")
        tmp.replace(out)
    return out


def link(kernels_object: Path, symbols: list[str], out_path: Path) -> None:
    """``kernels.wasm`` from the kernels object and the driver, exporting each kernel's packed function."""
    exports = [f"_{name}" for name in DRIVER_EXPORTS] + [f"___tvm_ffi_{s}" for s in sorted(symbols)]
    cmd = [emcc(), *LINK_FLAGS, str(driver_object()), str(kernels_object), "-o", str(out_path)]
    _run([*cmd, f"-sEXPORTED_FUNCTIONS={','.join(exports)}"], "emcc (link kernels.wasm)")
