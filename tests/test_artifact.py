"""Artifact writing is atomic; loading verifies every file's sha256 and the versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparsec.artifact import MANIFEST, ArtifactWriter, check_versions, read_manifest
from sparsec.errors import SparsecError


def _write(out: Path, payload: bytes = b"model") -> Path:
    with ArtifactWriter(out) as w:
        w.path("model.onnx").write_bytes(payload)
        w.path("kernels.so").write_bytes(b"\x7fELF...")
        w.seal({"versions": {"sparsec": "0.1.0", "tvm": "t"}})
        return w.commit()


def test_write_and_read(tmp_path: Path) -> None:
    out = _write(tmp_path / "m.sparsec")
    m = read_manifest(out)
    assert set(m["files"]) == {"model.onnx", "kernels.so"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "m.sparsec"
    with pytest.raises(RuntimeError):
        with ArtifactWriter(out) as w:
            w.path("model.onnx").write_bytes(b"x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_previous(tmp_path: Path) -> None:
    out = _write(tmp_path / "m.sparsec", b"v1")
    with pytest.raises(RuntimeError):
        with ArtifactWriter(out) as w:
            w.path("model.onnx").write_bytes(b"v2")
            raise RuntimeError("boom")
    assert (out / "model.onnx").read_bytes() == b"v1"


@pytest.mark.parametrize("name", ["model.onnx", "kernels.so", MANIFEST])
def test_changed_byte_detected(tmp_path: Path, name: str) -> None:
    out = _write(tmp_path / "m.sparsec")
    f = out / name
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(SparsecError):
        read_manifest(out)


def test_manifest_path_escape(tmp_path: Path) -> None:
    out = _write(tmp_path / "m.sparsec")
    m = json.loads((out / MANIFEST).read_text())
    m["files"]["../evil"] = "0" * 64
    (out / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(SparsecError, match="outside the artifact"):
        read_manifest(out)


def test_refuses_to_replace_other_dir(tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SparsecError, match="not a sparsec artifact"):
        _write(out)
    assert (out / "keep.txt").read_text() == "mine"


def test_version_mismatch_names_both() -> None:
    with pytest.raises(SparsecError, match="built with tvm 0.26.*has tvm 0.27"):
        check_versions({"versions": {"sparsec": "0.1.0", "tvm": "0.26"}}, {"sparsec": "0.1.0", "tvm": "0.27"})


@pytest.mark.parametrize("key", ["sparsec", "tvm", "tvm_ffi", "onnxruntime"])
def test_every_version_checked(key: str) -> None:
    current = {"sparsec": "0.1.0", "tvm": "0.27", "tvm_ffi": "0.1.14", "onnxruntime": "1.23.2"}
    built = {**current, key: "9.9"}
    with pytest.raises(SparsecError, match=f"built with {key} 9.9, this installation has {key} {current[key]}"):
        check_versions({"versions": built}, current)
    check_versions({"versions": current}, current)  # equal versions pass
