"""Issue 8, runtime side through the CLI: artifacts from another version or target, and tampered files, are
refused with one line naming what differs; wrong inputs are an error, not a crash."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from models.synthetic import transformer_ffn
from sparsec.cli import main
from sparsec.options import toolchain_versions


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("art")
    onnx.save(transformer_ffn(density=0.1), str(d / "m.onnx"))
    r = CliRunner().invoke(main, ["compile", str(d / "m.onnx"), "--format", "csr"])
    assert r.exit_code == 0, r.stderr
    return d / "m.sparsec"


def _run(art: Path, tmp: Path, x: np.ndarray) -> tuple[int, str]:
    np.save(tmp / "x.npy", x)
    r = CliRunner().invoke(main, ["run", str(art), "--input", f"x={tmp / 'x.npy'}"])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 0 or (len(lines) == 1 and lines[0].startswith("error: ")), r.stderr
    return r.exit_code, r.stderr


def _edited(art: Path, tmp: Path, edit: dict[str, object]) -> Path:
    copy = tmp / "copy.sparsec"
    shutil.copytree(art, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for dotted, value in edit.items():
        node = manifest
        *path, last = dotted.split(".")
        for key in path:
            node = node[key]
        node[last] = value
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


X = np.ones((2, 3, 48), np.float32)


@pytest.mark.parametrize("key", ["sparsec", "tvm", "tvm_ffi", "onnxruntime"])
def test_other_version_refused_naming_both(artifact: Path, tmp_path: Path, key: str) -> None:
    mine = toolchain_versions()[key]
    code, err = _run(_edited(artifact, tmp_path, {f"versions.{key}": "0.0.1"}), tmp_path, X)
    assert code == 2
    assert f"built with {key} 0.0.1, this installation has {key} {mine}" in err


def test_other_target_refused_naming_both(artifact: Path, tmp_path: Path) -> None:
    code, err = _run(_edited(artifact, tmp_path, {"target.name": "tpu"}), tmp_path, X)
    from sparsec.targets.registry import known_targets

    assert code == 2 and f"unknown target 'tpu' (known targets: {', '.join(known_targets())})" in err


def test_other_artifact_format_refused(artifact: Path, tmp_path: Path) -> None:
    code, err = _run(_edited(artifact, tmp_path, {"artifact_format": 99}), tmp_path, X)
    assert code == 2 and "artifact format 99" in err


@pytest.mark.parametrize(
    "x,match",
    [
        (np.ones((2, 3, 47), np.float32), "does not match ['batch', 'seq', 48]"),
        (np.ones((2, 3, 48), np.float64), "run failed"),
        (np.ones((48,), np.float32), "does not match ['batch', 'seq', 48]"),
    ],
)
def test_wrong_inputs_are_errors(artifact: Path, tmp_path: Path, x: np.ndarray, match: str) -> None:
    code, err = _run(artifact, tmp_path, x)
    assert code == 2 and match in err


def test_good_input_runs(artifact: Path, tmp_path: Path) -> None:
    code, err = _run(artifact, tmp_path, X)
    assert code == 0, err


def test_in_process_session_refuses_other_target(artifact: Path, tmp_path: Path) -> None:
    from sparsec.errors import SparsecError
    from sparsec.runtime import InferenceSession

    with pytest.raises(SparsecError, match=r"artifact targets 'arm'; this host \(x86_64\) runs x86 artifacts only"):
        InferenceSession(_edited(artifact, tmp_path, {"target.name": "arm"}))


def test_sessions_keep_ort_spinning() -> None:
    """The kernels run on ORT's pool (runtime/ep/parallel.h): nothing fights ORT's spinning workers any more."""
    from sparsec.runtime import default_session_options

    with pytest.raises(RuntimeError, match="does not have configuration"):  # ORT's default: spinning on
        default_session_options().get_session_config_entry("session.intra_op.allow_spinning")
