"""Build the sparsec plugin EP (``libsparsec_ep.so``) from ``sparsec/runtime/ep/``.

Steps (one printed line each):
1. ORT C headers: the pip wheel has none, so fetch Debian's ``libonnxruntime-dev`` .deb from the 'sid' suite with a
   PRIVATE apt configuration (own source list, lists and cache under ``third_party/ort/apt``; the system's apt state
   is never touched) and unpack it with ``dpkg -x`` into ``third_party/ort/``.
2. cmake configure + build into ``build/ep/``, linking the installed ``tvm_ffi`` package's ``libtvm_ffi.so`` with
   an rpath to its folder, so the EP and Python's ``tvm_ffi`` share one libtvm_ffi instance in the process.
3. copy the library to ``sparsec/runtime/lib/libsparsec_ep.so``.

``SPARSEC_ORT_INCLUDE=<dir with onnxruntime_ep_c_api.h>`` skips step 1 (offline machines).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import SparsecError

_HERE = Path(__file__).resolve().parent
REPO_ROOT = _HERE.parents[1]
EP_SOURCES = _HERE / "ep"
ORT_DIR = REPO_ROOT / "third_party" / "ort"
BUILD_DIR = REPO_ROOT / "build" / "ep"
_DEB_PACKAGE = "libonnxruntime-dev"
_DEB_SUITE = "sid"
_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
_DEFAULT_MIRROR = "http://deb.debian.org/debian"
# The plugin EP C API (compile-based EPs, Node_GetAttributeByName, ...) is complete from 1.23 on.
_MIN_ORT_HEADERS = (1, 23)


def ep_library_path() -> Path:
    """Where the built EP library lives (it may not exist yet)."""
    return _HERE / "lib" / "libsparsec_ep.so"


def _step(msg: str) -> None:
    print(f"[build_ep] {msg}", flush=True)


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as e:
        raise SparsecError(f"{what}: cannot run {cmd[0]}: {e.strerror}") from None
    if res.returncode != 0:
        lines = [ln.strip() for ln in (res.stderr + "\n" + res.stdout).splitlines() if ln.strip()]
        # The most telling line: a compiler's first "error:", apt's "E:", then any failure line, else the last line.
        detail = f"exit status {res.returncode}"
        for pattern in (r"\berror:", r"^E:", r"\b(error|failed)\b"):
            hits = [ln for ln in lines if re.search(pattern, ln, re.IGNORECASE)]
            if hits:
                detail = hits[0]
                break
        else:
            detail = lines[-1] if lines else detail
        raise SparsecError(f"{what} failed: {detail}")
    return res.stdout


def _need_tool(name: str, why: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SparsecError(f"`{name}` not found on PATH (needed to {why})")
    return path


def _version_tuple(text: str) -> tuple[int, ...]:
    m = re.match(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _runtime_ort_version() -> tuple[int, ...]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return _version_tuple(version("onnxruntime"))
    except PackageNotFoundError:
        raise SparsecError("onnxruntime is not installed") from None


def apt_mirror_uri(
    sources_dir: Path = Path("/etc/apt/sources.list.d"), legacy: Path = Path("/etc/apt/sources.list")
) -> str:
    """The main Debian mirror URI this machine's apt already uses (deb822 .sources first, then sources.list)."""
    uris: list[str] = []
    for src in sorted(sources_dir.glob("*.sources")) if sources_dir.is_dir() else []:
        for line in src.read_text(errors="replace").splitlines():
            if line.startswith("URIs:"):
                uris.extend(line.split(":", 1)[1].split())
    if legacy.is_file():
        for line in legacy.read_text(errors="replace").splitlines():
            # deb [options] URI suite components
            m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", line)
            if m:
                uris.append(m.group(1))
    # The security archive has no 'sid'; take the first ordinary archive.
    for uri in uris:
        if "security" not in uri and uri.startswith(("http://", "https://")):
            return uri.rstrip("/")
    return _DEFAULT_MIRROR


def ort_include_dir() -> Path:
    """Folder holding ``onnxruntime_c_api.h``: ``$SPARSEC_ORT_INCLUDE`` or the fetched headers."""
    env = os.environ.get("SPARSEC_ORT_INCLUDE")
    if env:
        return Path(env)
    return ORT_DIR / "usr" / "include" / "onnxruntime"


def fetch_ort_headers() -> Path:
    """Download + unpack Debian's libonnxruntime-dev into third_party/ort/ with a private apt configuration."""
    inc = ort_include_dir()
    if (inc / "onnxruntime_ep_c_api.h").is_file():
        return inc
    if os.environ.get("SPARSEC_ORT_INCLUDE"):
        raise SparsecError(f"SPARSEC_ORT_INCLUDE={inc} has no onnxruntime_ep_c_api.h")
    apt_get = _need_tool("apt-get", "fetch the ONNX Runtime headers")
    dpkg = _need_tool("dpkg", "unpack the ONNX Runtime headers")
    apt_dir = ORT_DIR / "apt"
    (apt_dir / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt_dir / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    mirror = apt_mirror_uri()
    (apt_dir / "sources.list").write_text(f"deb [signed-by={_KEYRING}] {mirror} {_DEB_SUITE} main\n")
    opts = [
        f"-o=Dir::Etc::SourceList={apt_dir / 'sources.list'}",
        "-o=Dir::Etc::SourceParts=/dev/null",
        f"-o=Dir::State::Lists={apt_dir / 'lists'}",
        f"-o=Dir::Cache={apt_dir / 'cache'}",
        "-o=Debug::NoLocking=1",
        "-o=APT::Sandbox::User=root",  # the private folders are not readable by _apt
    ]
    _step(f"fetching {_DEB_PACKAGE} package index from {mirror} ({_DEB_SUITE}, private apt config)")
    _run([apt_get, *opts, "-q", "update"], "apt-get update (private sid list; no network?)")
    for old in apt_dir.glob(f"{_DEB_PACKAGE}_*.deb"):
        old.unlink()
    _step(f"downloading {_DEB_PACKAGE}")
    _run([apt_get, *opts, "-q", "download", _DEB_PACKAGE], f"apt-get download {_DEB_PACKAGE}", cwd=apt_dir)
    debs = sorted(apt_dir.glob(f"{_DEB_PACKAGE}_*.deb"))
    if not debs:
        raise SparsecError(f"apt-get download produced no {_DEB_PACKAGE} .deb in {apt_dir}")
    deb_version = _version_tuple(debs[-1].name.split("_")[1])
    runtime = _runtime_ort_version()
    # ORT refuses an EP whose API version is newer than the runtime; an EP API older than 1.23 lacks compile EPs.
    if deb_version < _MIN_ORT_HEADERS or deb_version > runtime:
        raise SparsecError(
            f"{debs[-1].name}: headers {deb_version} unusable with onnxruntime {runtime} "
            f"(need >= {_MIN_ORT_HEADERS} and <= the runtime); set SPARSEC_ORT_INCLUDE"
        )
    _step(f"unpacking {debs[-1].name} into {ORT_DIR}")
    _run([dpkg, "-x", str(debs[-1]), str(ORT_DIR)], "dpkg -x")
    if not (inc / "onnxruntime_ep_c_api.h").is_file():
        raise SparsecError(f"{debs[-1].name} has no onnxruntime_ep_c_api.h under {inc}")
    # The sid package index is ~100 MB unpacked and only needed for this one download.
    for scratch in ("lists", "cache"):
        shutil.rmtree(apt_dir / scratch, ignore_errors=True)
    return inc


def _tvm_ffi_paths() -> tuple[Path, Path]:
    """(include dir, libtvm_ffi.so) of the installed tvm_ffi package, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("tvm_ffi")
    if spec is None or not spec.submodule_search_locations:
        raise SparsecError("apache-tvm-ffi (python package tvm_ffi) is not installed")
    root = Path(list(spec.submodule_search_locations)[0])
    inc, lib = root / "include", root / "lib" / "libtvm_ffi.so"
    if not (inc / "tvm" / "ffi" / "function.h").is_file() or not lib.is_file():
        raise SparsecError(f"tvm_ffi at {root} lacks include/tvm/ffi or lib/libtvm_ffi.so")
    return inc, lib


def _sources() -> list[Path]:
    return sorted(p for p in EP_SOURCES.iterdir() if p.suffix in (".cc", ".h") or p.name == "CMakeLists.txt")


def _up_to_date(lib: Path) -> bool:
    if not lib.is_file():
        return False
    built = lib.stat().st_mtime
    return all(src.stat().st_mtime <= built for src in _sources())


def build_ep(force: bool = False) -> Path:
    """Build (if needed) and return the path of ``libsparsec_ep.so``."""
    out = ep_library_path()
    if not force and _up_to_date(out):
        _step(f"up to date: {out}")
        return out
    cmake = _need_tool("cmake", "build the sparsec EP")
    if not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        raise SparsecError("no C++ compiler (c++/g++/clang++) on PATH (needed to build the sparsec EP)")
    ort_inc = fetch_ort_headers()
    ffi_inc, ffi_lib = _tvm_ffi_paths()
    _step(f"ORT headers: {ort_inc}; tvm-ffi: {ffi_lib}")
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    if generator and (BUILD_DIR / "CMakeCache.txt").is_file() and not (BUILD_DIR / "build.ninja").is_file():
        shutil.rmtree(BUILD_DIR)  # cached with another generator: cmake refuses to switch
        BUILD_DIR.mkdir(parents=True)
    _step(f"cmake configure -> {BUILD_DIR}")
    _run(
        [
            cmake,
            "-S",
            str(EP_SOURCES),
            "-B",
            str(BUILD_DIR),
            *generator,
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DORT_INCLUDE_DIR={ort_inc}",
            f"-DTVM_FFI_INCLUDE_DIR={ffi_inc}",
            f"-DTVM_FFI_LIBRARY={ffi_lib}",
        ],
        "cmake configure",
    )
    _step("compiling libsparsec_ep.so")
    _run([cmake, "--build", str(BUILD_DIR), "--parallel", str(os.cpu_count() or 2)], "build of the sparsec EP")
    built = BUILD_DIR / "libsparsec_ep.so"
    if not built.is_file():
        raise SparsecError(f"build finished but {built} is missing")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".so.tmp")
    shutil.copy2(built, tmp)
    os.replace(tmp, out)  # atomic: a process that already mapped the old file keeps a valid copy
    _step(f"installed {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        build_ep(force="--force" in args)
    except SparsecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
