"""The CLI through click's runner: help is instant, bad input is one line + exit 2, the main paths work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from models.synthetic import transformer_ffn
from sparsec.cli import main


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_help_does_not_import_tvm() -> None:
    code = "import sys, sparsec.cli; assert 'tvm' not in sys.modules and 'onnxruntime' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    code_, out, _ = run("--help")
    assert code_ == 0 and "compile" in out


@pytest.mark.parametrize(
    "args,match",
    [
        (["compile", "nope.onnx"], "no such file"),
        (["compile", "{bad}", "--format", "bsr:0x0"], "bad --format"),
        (["compile", "{bad}", "--format", "sparse"], "bad --format"),
        (["compile", "{bad}"], "not a valid ONNX model"),
        (["compile", "{good}", "--target", "quantum"], "unknown target"),
        (["inspect", "{bad}"], "not a valid ONNX model"),
        (["prune", "{good}", "--pattern", "random:0.5", "-o", "{out}"], "pattern"),
        (["run", "{tmp}", "--input", "x=y.npy"], "not a sparsec artifact"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path: Path, args: list[str], match: str) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01not onnx")
    good = tmp_path / "good.onnx"
    onnx.save(transformer_ffn(), str(good))
    subst = {"{bad}": str(bad), "{good}": str(good), "{out}": str(tmp_path / "o.onnx"), "{tmp}": str(tmp_path)}
    code, _, err = run(*[subst.get(a, a) for a in args])
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("[sparsec] ")]  # progress lines
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], err
    assert not (tmp_path / "bad.sparsec").exists()


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("cli")
    model = d / "ffn.onnx"
    onnx.save(transformer_ffn(density=0.1), str(model))
    code, out, err = run("compile", str(model), "--target", "x86", "--format", "csr")
    assert code == 0, err
    assert "wrote" in out
    return model, model.with_suffix(".sparsec")


def test_compile_writes_artifact(compiled: tuple[Path, Path]) -> None:
    _, art = compiled
    manifest = json.loads((art / "manifest.json").read_text())
    assert {"model.onnx", "kernels.so"} <= set(manifest["files"])
    assert manifest["target"]["name"] == "x86"
    formats = {la["name"]: la["format"] for la in manifest["layers"]}
    assert set(formats.values()) == {"csr"} and len(formats) == 3
    assert all(0.0 <= la["density"] <= 1.0 for la in manifest["layers"])


def test_run_and_npz(compiled: tuple[Path, Path], tmp_path: Path) -> None:
    model, art = compiled
    x = np.random.default_rng(5).standard_normal((3, 7, 48)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out, err = run("run", str(art), "--input", f"x={tmp_path / 'x.npy'}", "-o", str(tmp_path / "o.npz"))
    assert code == 0, err
    import onnxruntime as ort

    ref = ort.InferenceSession(str(model)).run(None, {"x": x})
    got = np.load(tmp_path / "o.npz")
    np.testing.assert_allclose(got["y"], ref[0], rtol=1e-4, atol=1e-4 * np.abs(ref[0]).max())
    np.testing.assert_allclose(got["z"], ref[1], rtol=1e-4, atol=1e-4 * np.abs(ref[1]).max())


def test_run_wrong_input_name(compiled: tuple[Path, Path], tmp_path: Path) -> None:
    _, art = compiled
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 48), np.float32))
    code, _, err = run("run", str(art), "--input", f"nope={tmp_path / 'x.npy'}")
    assert code == 2 and "--input names no input of the artifact: ['nope'] (it takes ['x'])" in err


def test_run_draws_random_inputs_sized_by_input_shape_or_dim(compiled: tuple[Path, Path], tmp_path: Path) -> None:
    """Inputs without a file are seeded random values of the --input-shape / --dim size, reported on stderr; the
    outputs are ORT's on the original model for the same values."""
    import onnxruntime as ort

    from sparsec.run import random_inputs

    model, art = compiled
    out = tmp_path / "o.npz"
    code, _, err = run("run", str(art), "--input-shape", "x=2,5,48", "--seed", "7", "-o", str(out))
    assert code == 0 and "random inputs (seed 7): x [2, 5, 48] float32" in err, err
    x = random_inputs(art, ["x"], {"x": [2, 5, 48]}, {}, seed=7)["x"]
    ref = ort.InferenceSession(str(model)).run(None, {"x": x})
    got = np.load(out)
    assert got["y"].shape == (2, 5, 48)
    np.testing.assert_allclose(got["y"], ref[0], rtol=1e-4, atol=1e-4 * np.abs(ref[0]).max())
    code, stdout, err = run("run", str(art), "--dim", "batch=1", "--dim", "seq=3")
    assert code == 0 and "x [1, 3, 48]" in err and "y: shape=[1, 3, 48]" in stdout


@pytest.mark.parametrize(
    "args,match",
    [
        ([], "input 'x' [batch, seq, 48] has no --input file and symbolic dims batch, seq: give --input-shape"),
        (["--input-shape", "x=2,5,4"], "--input-shape x=2,5,4: the artifact takes [batch, seq, 48]"),
        (["--input-shape", "x=2,48"], "the artifact takes [batch, seq, 48]"),
        (["--input-shape", "y=2,5,48"], "--input-shape names no input of the artifact: ['y']"),
        (["--input", "x={x}", "--input-shape", "x=2,5,48"], "the file has shape [1, 1, 48], --input-shape says"),
    ],
)
def test_run_random_input_errors(compiled: tuple[Path, Path], tmp_path: Path, args: list[str], match: str) -> None:
    _, art = compiled
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 48), np.float32))
    code, stdout, err = run("run", str(art), *[a.replace("{x}", str(tmp_path / "x.npy")) for a in args])
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1 and stdout == "", err


def test_bench_json(compiled: tuple[Path, Path]) -> None:
    model, art = compiled
    code, out, err = run(
        "bench", str(art), "--baseline", str(model), "--dim", "batch=2", "--dim", "seq=8", "--repeat", "3", "--json"
    )
    assert code == 0, err
    r = json.loads(out)
    assert r["ort_ms"] > 0 and r["sparsec_ms"] > 0 and r["max_rel_error"] < 1e-4
    assert r["speedup"] == pytest.approx(r["ort_ms"] / r["sparsec_ms"])


def test_inspect_json(compiled: tuple[Path, Path]) -> None:
    model, _ = compiled
    code, out, err = run("inspect", str(model), "--json")
    assert code == 0, err
    rows = json.loads(out)["weights"]
    assert len(rows) == 3
    manifest = json.loads((compiled[1] / "manifest.json").read_text())["layers"]
    for row, record in zip(rows, manifest, strict=True):
        profile = {"nm", "blocks", "zero_rows", "zero_cols", "unfused"}
        assert {"name", "op", "shape", "density", "format", "reason"} | profile <= set(row)
        # the manifest's record of the layer (compiled with --format csr, inspect ranks for auto), plus the profile,
        # the fusion notes and the M / dense time the format was ranked with: one to_json serves both
        # (a layer inspect's `auto` keeps dense on this host has no kernel fields: the cost table is the ISA's)
        sparse_only = set() if row["format"] != "dense" else {"kernel", "epilogue", "region", "predicted_speedup"}
        assert set(record) - sparse_only <= set(row), (row, record)
        assert set(row) - set(record) - {"predicted_speedup"} == profile | {"rows", "dense_us"}, (row, record)
        assert [row[k] for k in ("name", "op", "shape", "density")] == [
            record[k] for k in ("name", "op", "shape", "density")
        ]


def test_prune_then_inspect(tmp_path: Path) -> None:
    src = tmp_path / "dense.onnx"
    onnx.save(transformer_ffn(density=1.0), str(src))
    out = tmp_path / "p.onnx"
    code, _, err = run("prune", str(src), "--pattern", "nm:2:4", "-o", str(out))
    assert code == 0, err
    code, text, err = run("inspect", str(out), "--json")
    rows = json.loads(text)["weights"]
    assert all(r["nm"]["2:4"] == 1.0 for r in rows), rows


def test_tampered_artifact_refused(compiled: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    _, art = compiled
    copy = tmp_path / "t.sparsec"
    shutil.copytree(art, copy)
    lib = copy / "kernels.so"
    data = bytearray(lib.read_bytes())
    data[-10] ^= 0xFF
    lib.write_bytes(bytes(data))
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 48), np.float32))
    code, _, err = run("run", str(copy), "--input", f"x={tmp_path / 'x.npy'}")
    assert code == 2 and "kernels.so does not match its sha256" in err


def test_tune_cost_model_passes_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[list[str]] = []
    import sparsec.passes.calibrate as calibrate

    monkeypatch.setattr(calibrate, "main", lambda argv: seen.append(argv))
    code, _, err = run("tune-cost-model", "--quick", "--threads", "3", "--out", str(tmp_path / "c.json"))
    assert code == 0, err
    assert seen == [["--quick", "--threads", "3", "--out", str(tmp_path / "c.json")]]
