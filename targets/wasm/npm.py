"""Install the pinned npm packages of the wasm target (``python -m sparsec.targets.wasm.npm``; ``make setup`` runs it).

``npm ci`` in ``<cache>/npm`` from the committed ``targets/wasm/npm/package.json`` + ``package-lock.json``: exact
versions, nothing fetched into the source tree. A no-op when the installed lock file matches the committed one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from sparsec.errors import SparsecError

from .toolchain import NPM_SPEC_DIR, npm_dir

FILES = ("package.json", "package-lock.json")


def ensure_npm_packages() -> None:
    """Run ``npm ci`` unless the same lock file is already installed."""
    dest = npm_dir()
    stamp = dest / "node_modules" / ".sparsec-lock"
    lock = (NPM_SPEC_DIR / "package-lock.json").read_bytes()
    if stamp.is_file() and stamp.read_bytes() == lock:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SparsecError("npm not found on PATH (needed for --target wasm): install nodejs and npm")
    dest.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copy2(NPM_SPEC_DIR / name, dest / name)
    proc = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=dest, capture_output=True, text=True
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SparsecError(f"npm ci in {dest} failed: {tail[0]}")
    stamp.write_bytes(lock)


def main() -> int:
    try:
        ensure_npm_packages()
    except SparsecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"npm packages for --target wasm installed in {npm_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
