"""Skip markers and helpers for the wasm target tests (models come from arm_models: the same MLP and FFN)."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest

from sparsec.compiler import compile_model
from sparsec.options import CompileOptions
from tests.targets.arm_models import MODELS, for_format, mlp

__all__ = ["MODELS", "compile_wasm", "for_format", "mlp", "needs_chromium", "needs_wasm"]


def _wasm_missing() -> str:
    if shutil.which("emcc") is None:
        return "emcc not found: install emscripten (tools/system_deps.sh)"
    from sparsec.targets.wasm.toolchain import node_missing

    return node_missing()


needs_wasm = pytest.mark.skipif(bool(_wasm_missing()), reason=_wasm_missing() or "wasm toolchain present")
needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="chromium not installed (tools/system_deps.sh installs it)"
)


def compile_wasm(m: onnx.ModelProto, tmp_path: Path, fmt: str, verify: bool | None = None) -> Path:
    """``m`` saved and compiled with ``--target wasm --format fmt`` (verified in node unless ``verify`` is False)."""
    onnx.save(m, str(tmp_path / "m.onnx"))
    opts = CompileOptions(target="wasm", format=fmt, verify=verify)
    return compile_model(tmp_path / "m.onnx", tmp_path / "m.sparsec", opts).artifact
