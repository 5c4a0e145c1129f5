"""The on-disk cache of tuning measurements and built kernel libraries (``--tune``; second compiles are instant).

Entries live under ``$SPARSEC_CACHE_DIR`` (default ``$XDG_CACHE_HOME/sparsec`` or ``~/.cache/sparsec``);
``SPARSEC_CACHE=off`` disables the cache. A key is the sha256 of canonical JSON of everything the entry depends on
(shapes, sparsity pattern hash, target CPU and ISA, toolchain versions), so a stale entry is never found. Entries
are written atomically and carry their own sha256: a damaged entry is ignored and rebuilt, never used.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def enabled() -> bool:
    return os.environ.get("SPARSEC_CACHE", "on").lower() not in ("off", "0", "no")


def root() -> Path:
    if os.environ.get("SPARSEC_CACHE_DIR"):
        return Path(os.environ["SPARSEC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sparsec"


def key_of(parts: dict[str, Any]) -> str:
    """The key of an entry: ``parts`` and the kernel generator's own sources (a changed template never finds the
    kernels or timings of the old one, even at the same sparsec version)."""
    parts = {**parts, "kernel_sources": kernel_sources()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@functools.cache
def kernel_sources() -> str:
    """sha256 of the code that generates kernels (sparsec.targets: templates, tables, toolchains)."""
    from . import targets

    h = hashlib.sha256()
    folder = Path(targets.__file__).parent
    for p in sorted(folder.rglob("*")):
        if p.suffix in (".py", ".c", ".mjs", ".cmake") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _path(kind: str, key: str, suffix: str) -> Path:
    return root() / kind / key[:2] / f"{key}{suffix}"


def _write_atomic(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only or full cache only costs time


def get_json(kind: str, key: str) -> dict[str, Any] | None:
    if not enabled():
        return None
    try:
        entry = json.loads(_path(kind, key, ".json").read_text())
        body = entry["value"]
        if entry.get("sha256") != hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest():
            return None
        return body if isinstance(body, dict) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def put_json(kind: str, key: str, value: dict[str, Any]) -> None:
    if enabled():
        digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
        _write_atomic(_path(kind, key, ".json"), json.dumps({"sha256": digest, "value": value}).encode())


def get_file(kind: str, key: str) -> bytes | None:
    """The cached bytes, checked against the sha256 stored beside them."""
    if not enabled():
        return None
    try:
        data = _path(kind, key, ".bin").read_bytes()
        digest = _path(kind, key, ".sha256").read_text().strip()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == digest else None


def put_file(kind: str, key: str, data: bytes) -> None:
    if enabled():
        _write_atomic(_path(kind, key, ".bin"), data)
        _write_atomic(_path(kind, key, ".sha256"), hashlib.sha256(data).hexdigest().encode())


def usage() -> dict[str, Any]:
    """Where the cache is, whether it is on, and entries / bytes per kind."""
    kinds: dict[str, dict[str, int]] = {}
    base = root()
    if base.is_dir():
        for kind in sorted(p.name for p in base.iterdir() if p.is_dir()):
            files = [f for f in (base / kind).rglob("*") if f.is_file() and f.suffix in (".json", ".bin")]
            kinds[kind] = {"entries": len(files), "bytes": sum(f.stat().st_size for f in files)}
    return {"path": str(base), "enabled": enabled(), "kinds": kinds}


def clear() -> int:
    """Delete every cache entry (only the kinds sparsec writes); returns how many entries were removed."""
    import shutil

    removed = 0
    for kind in ("tune", "lib"):
        d = root() / kind
        if d.is_dir():
            removed += sum(1 for f in d.rglob("*") if f.is_file() and f.suffix in (".json", ".bin"))
            shutil.rmtree(d, ignore_errors=True)
    return removed
