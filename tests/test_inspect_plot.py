"""``sparsec inspect --plot``: the plotted values come from the report (cost model times, speedups), the SVG names
every layer and format as text and is byte-stable, PNG works, bad paths are one line before any work."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from models.synthetic import transformer_ffn
from sparsec.cli import main
from sparsec.inspect import inspect_model
from sparsec.plot import series


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """w1 and w3 at 10% density (sparse), w2 fully dense (stays dense; a 48x96 one was predicted faster as bsr:16x1
    with the AVX-512 table, ORT's call overhead dominating so small a MatMul)."""
    from sparsec.prune import parse_pattern, prune_weight

    m = transformer_ffn(d=256, hidden=1024, density=1.0)  # big enough that a full layer stays dense on every ISA
    for t in m.graph.initializer:
        if t.name in ("w1", "w3"):
            a = onnx.numpy_helper.to_array(t)
            t.CopyFrom(onnx.numpy_helper.from_array(prune_weight(a, parse_pattern("unstructured:0.9")), t.name))
    p = tmp_path / "ffn.onnx"
    onnx.save(m, str(p))
    return p


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_series_follow_the_report(mixed: Path) -> None:
    from sparsec.passes.choose import dense_time_us
    from sparsec.passes.cost_model import cost_model

    report = inspect_model(mixed, dims={"batch": 4, "seq": 32})
    s = series(report)
    assert s.names == ["fc1", "fc2", "head"] and s.formats == [r["format"] for r in report["weights"]]
    assert s.formats[0] != "dense" and s.formats[1] == "dense"  # both kinds of bar (the head's depends on the host)
    assert s.density[0] == pytest.approx(0.1, abs=0.01) and s.density[1] == 1.0
    cost = cost_model("x86", report["target"]["isa"])
    for r, d, ours, sp in zip(report["weights"], s.dense_us, s.sparsec_us, s.speedup, strict=True):
        assert r["rows"] == 128  # batch 4 x seq 32
        shape = r["shape"]  # [N, K]
        expected = cost.predict_us("dense", shape[1], shape[0], shape[0] * shape[1], 128)
        assert d == pytest.approx(expected, rel=1e-3)
        assert sp == r["predicted_speedup"]
        assert ours == pytest.approx(d / sp if r["format"] != "dense" else d, rel=1e-9)
    assert dense_time_us  # the same function inspect uses for convs (ORT's Conv factor)


def test_conv_dense_time_includes_orts_conv_factor(tmp_path: Path) -> None:
    from sparsec.passes.cost_model import ORT_CONV_FASTER, cost_model
    from tests.conv_graphs import GEOMETRIES, geometry_model

    p = tmp_path / "conv.onnx"
    onnx.save(geometry_model(0.2), str(p))
    report = inspect_model(p, dims={"batch": 1})
    cost = cost_model("x86", report["target"]["isa"])
    assert len(report["weights"]) == len(GEOMETRIES)
    for r in report["weights"]:
        n, k = r["shape"]
        pointwise = r["name"] == "pw"  # the only 1x1, stride-1, unpadded geometry
        plain = cost.predict_us("dense", k, n, n * k, r["rows"])
        expected = plain / ORT_CONV_FASTER[pointwise]  # the report rounds to 3 decimals
        assert r["dense_us"] == pytest.approx(expected, rel=1e-3, abs=5e-4), r["name"]


def test_svg_names_every_layer_and_format_and_is_stable(mixed: Path, tmp_path: Path) -> None:
    out = tmp_path / "plot.svg"
    code, stdout, _ = run("inspect", str(mixed), "--dim", "batch=4", "--dim", "seq=32", "--plot", str(out))
    formats = [r["format"] for r in inspect_model(mixed, dims={"batch": 4, "seq": 32})["weights"]]
    sparse = sum(f != "dense" for f in formats)
    assert code == 0 and stdout.splitlines()[-1] == f"wrote {out} (3 layers, {sparse} sparse)"
    root = ET.parse(out).getroot()
    texts = {"".join(t.itertext()).strip() for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert {"fc1", "fc2", "head"} | {f.split(":")[0] for f in formats} <= texts
    assert any(t.startswith("these layers: ORT dense") for t in texts)
    first = out.read_bytes()
    run("inspect", str(mixed), "--dim", "batch=4", "--dim", "seq=32", "--plot", str(out))
    assert out.read_bytes() == first


def test_png_and_json_stdout_stays_json(mixed: Path, tmp_path: Path) -> None:
    out = tmp_path / "plot.png"
    code, stdout, stderr = run("inspect", str(mixed), "--json", "--plot", str(out))
    assert code == 0 and json.loads(stdout)["weights"] and f"wrote {out}" in stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name,match", [("plot.pdf", "expected a .svg or .png"), ("nodir/plot.svg", "does not exist")])
def test_bad_plot_path_is_one_line_and_writes_nothing(mixed: Path, tmp_path: Path, name: str, match: str) -> None:
    code, stdout, stderr = run("inspect", str(mixed), "--plot", str(tmp_path / name))
    assert code == 2 and stdout == "" and match in stderr and len(stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ffn.onnx"]
