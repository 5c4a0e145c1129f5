"""``--dim`` values give symbolic activations a row count M for format selection and tuning (else 128)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from click.testing import CliRunner

from models.synthetic import transformer_ffn
from sparsec.cli import main
from sparsec.options import CompileOptions
from sparsec.pipeline import compile_graph
from sparsec.targets.registry import get_target


def _reasons(options: CompileOptions) -> dict[str, str]:
    model = onnx.shape_inference.infer_shapes(transformer_ffn(density=0.1), strict_mode=True, data_prop=True)
    _, records = compile_graph(model, get_target("x86"), options)
    return {r.name: r.to_json()["reason"] for r in records}


def test_dims_set_the_rows_the_cost_model_sees() -> None:
    default = _reasons(CompileOptions(verify=False))
    assert all("M=128" in r for r in default.values()), default
    sized = _reasons(CompileOptions(verify=False, dims={"batch": 3, "seq": 7}))
    assert all("M=21" in r for r in sized.values()), sized  # batch * seq rows, through Reshape(-1, d) too
    partial = _reasons(CompileOptions(verify=False, dims={"batch": 3}))
    assert all("M=128" in r for r in partial.values()), partial  # seq unknown: the default


def test_cli_dims_reach_selection_and_manifest(tmp_path: Path) -> None:
    src = tmp_path / "m.onnx"
    onnx.save(transformer_ffn(density=0.1), str(src))
    r = CliRunner().invoke(main, ["compile", str(src), "--dim", "batch=2", "--dim", "seq=4"])
    assert r.exit_code == 0, r.stderr
    manifest = json.loads((tmp_path / "m.sparsec" / "manifest.json").read_text())
    assert manifest["options"]["dims"] == {"batch": 2, "seq": 4}
    reasons = {la["name"]: la["reason"] for la in manifest["layers"]}
    assert all("M=8" in r for r in reasons.values()), reasons


def test_inspect_takes_dims(tmp_path: Path) -> None:
    src = tmp_path / "m.onnx"
    onnx.save(transformer_ffn(density=0.1), str(src))
    r = CliRunner().invoke(main, ["inspect", str(src), "--json", "--dim", "batch=5", "--dim", "seq=2"])
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)["weights"]
    assert all("M=10" in row["reason"] for row in rows), rows
