"""Compiling the same model with the same options twice gives byte-identical artifacts (issue 8: cacheable,
auditable): no timestamps, temporary paths or unordered maps leak into any file."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from models.synthetic import transformer_ffn
from sparsec.compiler import compile_model
from sparsec.options import CompileOptions


@pytest.mark.parametrize("fmt", ["auto", "bsr:4x4"])
def test_two_compiles_are_byte_identical(tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARSEC_CACHE", "off")  # both compiles really build their kernel library
    src = tmp_path / "ffn.onnx"
    onnx.save(transformer_ffn(density=0.15, seed=4), str(src))
    opts = CompileOptions(format=fmt, verify=False)
    a = compile_model(src, tmp_path / "a.sparsec", opts).artifact
    b = compile_model(src, tmp_path / "sub" / "b.sparsec", opts).artifact  # another output path, too
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert {"manifest.json", "model.onnx", "kernels.so"} <= set(names)
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs between two compiles"
    manifest = json.loads((a / "manifest.json").read_text())
    assert str(tmp_path) not in json.dumps(manifest)  # no absolute paths of the machine that compiled it
