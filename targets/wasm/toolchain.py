"""The tools the wasm target needs (Debian's emscripten and node, onnxruntime-web from npm) and its cache folder.

Found on PATH only; ``tools/system_deps.sh`` installs emscripten, node and chromium, ``python -m
sparsec.targets.wasm.npm`` (run by ``make setup``) installs the pinned npm packages. Nothing here imports TVM.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sparsec.errors import SparsecError

EMCC = "emcc"
NODE = "node"
REPO_ROOT = Path(__file__).resolve().parents[2]
NPM_SPEC_DIR = Path(__file__).with_name("npm")  # the committed package.json + package-lock.json
_INSTALL_HINT = "install emscripten and nodejs (tools/system_deps.sh does)"


def cache_dir() -> Path:
    """npm packages and the compiled driver: ``$SPARSEC_WASM_CACHE`` or ``.cache/wasm`` in the checkout."""
    env = os.environ.get("SPARSEC_WASM_CACHE")
    return Path(env) if env else REPO_ROOT / ".cache" / "wasm"


def npm_dir() -> Path:
    """Where ``npm ci`` installs the pinned packages (``node_modules`` inside)."""
    return cache_dir() / "npm"


def ort_web_dist() -> Path:
    """onnxruntime-web's ``dist`` folder (the files the artifact carries)."""
    return npm_dir() / "node_modules" / "onnxruntime-web" / "dist"


def emcc() -> str:
    """Path of emcc, or a one-line error saying how to get it."""
    path = shutil.which(EMCC)
    if path is None:
        raise SparsecError(f"{EMCC} not found on PATH (needed for --target wasm): {_INSTALL_HINT}")
    return path


def node() -> str:
    """Path of node, or a one-line error saying how to get it."""
    path = shutil.which(NODE)
    if path is None:
        raise SparsecError(f"{NODE} not found on PATH (needed to run wasm artifacts): {_INSTALL_HINT}")
    return path


def node_env() -> dict[str, str]:
    """The environment emcc runs in: Debian's emscripten finds its JS tools' node modules in /usr/share/nodejs.
    (The standalone link below never runs emscripten's generated JS, so node's fetch needs no flag.)"""
    env = dict(os.environ)
    env.setdefault("NODE_PATH", "/usr/share/nodejs")
    return env


def ort_web_missing() -> str:
    """Why onnxruntime-web is not available ("" when it is installed)."""
    if not (ort_web_dist() / "ort.wasm.min.mjs").is_file():
        hint = "run `python -m sparsec.targets.wasm.npm` (make setup does)"
        return f"onnxruntime-web is not installed in {npm_dir()}: {hint}"
    return ""


def node_missing() -> str:
    """Why this host cannot run wasm artifacts ("" when node and onnxruntime-web are there)."""
    if shutil.which(NODE) is None:
        return f"{NODE} not found on PATH: {_INSTALL_HINT}"
    return ort_web_missing()
