"""wasm numbers in node: artifacts compiled with ``--target wasm`` run by ``sparsec.mjs`` in node (dense segments on
onnxruntime-web, sparse layers on the SIMD128 kernels), compared with ORT (Python) on the original model, on fresh
random inputs at several batch sizes (including ones that are not multiples of the vector width or the tiles).

MLP (bias + Relu / Sigmoid) and transformer FFN (bias + GELU, residual, a Gemm head after a dense Reshape) in csr,
bsr 4x4 / 16x1 and N:M 2:4; conv layers with every epilogue; a changed weight must change the outputs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from sparsec.errors import SparsecError
from sparsec.targets.wasm.node_runner import run_in_node
from sparsec.verify import TOLERANCE, random_feeds, reference_outputs, relative_error
from tests.targets.wasm_helpers import MODELS, compile_wasm, for_format, mlp, needs_wasm

pytestmark = needs_wasm
FORMATS = ("csr", "bsr:4x4", "bsr:16x1", "nm:2:4")
SHAPES = {"mlp": ({"batch": 1}, {"batch": 37}), "ffn": ({"batch": 1, "seq": 3}, {"batch": 2, "seq": 9})}


def assert_matches(original: onnx.ModelProto, art: Path, dims: dict[str, int], seed: int) -> None:
    feeds = random_feeds(original, dims, seed=seed)
    got = run_in_node(art, feeds)
    ref = reference_outputs(original, feeds)
    assert len(got) == len(ref)
    for g, r in zip(got, ref, strict=True):
        assert g.shape == r.shape and g.dtype == r.dtype
        assert relative_error(g, r) < TOLERANCE, dims


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_matches_ort(name: str, fmt: str, tmp_path: Path) -> None:
    original = for_format(MODELS[name](), fmt)
    art = compile_wasm(original, tmp_path, fmt, verify=False)
    layers = json.loads((art / "manifest.json").read_text())["layers"]
    assert [la["format"] for la in layers] == [fmt] * len(layers)  # every layer really runs on a wasm kernel
    for i, dims in enumerate(SHAPES[name]):
        assert_matches(original, art, dims, seed=100 + i)


def test_matmul_epilogues(tmp_path: Path) -> None:
    """A chain of MatMul + bias + activation with every activation fused on matmul kernels (Relu, Clip 0..6,
    Sigmoid, SiLU, HardSwish, x * HardSigmoid), then a dense Add on onnxruntime-web; GELU is in the FFN above."""
    from models.synthetic import sparse_matrix
    from tests.conv_graphs import ACTS, act_nodes
    from tests.passes.graphs import model

    rng = np.random.default_rng(5)
    width, nodes, cur = 24, [], "x"
    inits: dict[str, np.ndarray] = {"zero": np.array(0, np.float32), "six": np.array(6, np.float32)}
    for i, act in enumerate(ACTS):
        inits[f"w{i}"] = sparse_matrix(rng, (width, width), 0.3)
        inits[f"b{i}"] = rng.standard_normal(width).astype(np.float32)
        nodes += [
            onnx.helper.make_node("MatMul", [cur, f"w{i}"], [f"m{i}"]),
            onnx.helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
            *act_nodes(act, f"a{i}", f"h{i}"),
        ]
        cur = f"h{i}"
    nodes.append(onnx.helper.make_node("Add", ["x", cur], ["y"]))
    original = model(nodes, inits, {"x": ["batch", width]}, {"y": ["batch", width]})
    art = compile_wasm(original, tmp_path, "csr", verify=False)
    assert [la["format"] for la in json.loads((art / "manifest.json").read_text())["layers"]] == ["csr"] * len(ACTS)
    plan = json.loads((art / "plan.json").read_text())
    # every bias and activation fused; the residual Add after the last activation cannot be: one dense step
    assert [s["kind"] for s in plan["steps"]] == ["sparse"] * len(ACTS) + ["dense"]
    for i, batch in enumerate((1, 13)):
        assert_matches(original, art, {"batch": batch}, seed=400 + i)


def test_conv_epilogues(tmp_path: Path) -> None:
    """Sparse convs (3x3 and 1x1) with bias, residual and every activation run on the wasm conv kernels."""
    from tests.conv_graphs import epilogue_model

    original = epilogue_model()
    art = compile_wasm(original, tmp_path, "csr", verify=False)
    layers = json.loads((art / "manifest.json").read_text())["layers"]
    assert {la["op"] for la in layers} == {"Conv"} and {la["format"] for la in layers} == {"csr"}
    for i, batch in enumerate((1, 3)):
        assert_matches(original, art, {"batch": batch}, seed=200 + i)


@pytest.mark.parametrize("fmt", ["csr", "bsr:4x1", "bsr:1x4", "nm:2:4"])
def test_conv_geometries(fmt: str, tmp_path: Path) -> None:
    """Every conv geometry of tests/conv_graphs.py (1x1, strided, 3x3 same/valid/strided, dilated with asymmetric
    pads, 5x5) on odd channel counts, sparse in each format family."""
    from sparsec.prune import parse_pattern, prune_model
    from tests.conv_graphs import GEOMETRIES, geometry_model

    original = geometry_model(0.5 if fmt.startswith("nm") else 0.3, seed=len(fmt))
    if fmt.startswith("nm"):
        original, _ = prune_model(original, parse_pattern("nm:2:4"))
    art = compile_wasm(original, tmp_path, fmt, verify=False)
    layers = json.loads((art / "manifest.json").read_text())["layers"]
    assert [la["format"] for la in layers] == [fmt] * len(GEOMETRIES)
    assert_matches(original, art, {"batch": 2}, seed=300)


def test_cli_compile_verifies_in_node(tmp_path: Path) -> None:
    """What a new user runs: the default compile verifies the artifact in node and reports the error."""
    onnx.save(MODELS["ffn"](), str(tmp_path / "ffn.onnx"))
    cmd = [sys.executable, "-m", "sparsec.cli", "compile", str(tmp_path / "ffn.onnx"), "--target", "wasm"]
    res = subprocess.run([*cmd, "--format", "nm:2:4"], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr  # the FFN's weights do not fit 2:4: all dense, one onnxruntime-web step
    assert "0/3 layers sparse" in res.stdout and "max rel error" in res.stdout
    assert not (tmp_path / "ffn.sparsec" / "kernels.wasm").exists()
    res = subprocess.run([*cmd, "--format", "csr"], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert "max rel error" in res.stdout and "NOT verified" not in res.stdout
    assert "wasm artifact run on this host" in res.stderr
    assert (tmp_path / "ffn.sparsec" / "kernels.wasm").is_file()


def test_comparison_sees_the_wasm_kernels(tmp_path: Path) -> None:
    """A changed packed weight in weights.bin (manifest re-hashed so it loads) changes what node computes: the
    outputs compared above really come from the wasm kernels and the weights the artifact carries."""
    original = mlp()
    art = compile_wasm(original, tmp_path, "csr", verify=False)
    plan = json.loads((art / "plan.json").read_text())
    meta = plan["weights"]["fc1__values"]
    blob = bytearray((art / "weights.bin").read_bytes())
    values = np.frombuffer(blob, np.float32, meta["nbytes"] // 4, meta["offset"]).copy() + 1.0
    blob[meta["offset"] : meta["offset"] + meta["nbytes"]] = values.tobytes()
    (art / "weights.bin").write_bytes(bytes(blob))
    feeds = random_feeds(original, {"batch": 4}, seed=7)
    with pytest.raises(SparsecError, match=r"weights.bin does not match its sha256"):
        run_in_node(art, feeds)
    from sparsec.artifact import sha256_file

    manifest = json.loads((art / "manifest.json").read_text())
    manifest["files"]["weights.bin"] = sha256_file(art / "weights.bin")
    (art / "manifest.json").write_text(json.dumps(manifest))
    assert relative_error(run_in_node(art, feeds)[0], reference_outputs(original, feeds)[0]) > 1e-2


def test_changed_kernels_are_refused(tmp_path: Path) -> None:
    art = compile_wasm(mlp(), tmp_path, "csr", verify=False)
    wasm = bytearray((art / "kernels.wasm").read_bytes())
    wasm[len(wasm) // 2] ^= 0xFF
    (art / "kernels.wasm").write_bytes(bytes(wasm))
    with pytest.raises(SparsecError, match=r"kernels.wasm does not match its sha256 in manifest.json"):
        run_in_node(art, {"x": np.ones((2, 64), np.float32)})


def test_bad_input_is_an_error_not_a_crash(tmp_path: Path) -> None:
    art = compile_wasm(mlp(), tmp_path, "csr", verify=False)
    with pytest.raises(SparsecError, match=r"wasm artifact failed in node: sparsec: input 'x': dims \[2,63\]"):
        run_in_node(art, {"x": np.ones((2, 63), np.float32)})
    with pytest.raises(SparsecError, match=r"input 'x' must be float32"):
        run_in_node(art, {"x": np.ones((2, 64), np.float64)})


def test_sparsec_run_on_a_wasm_artifact(tmp_path: Path) -> None:
    """`sparsec run` on a wasm artifact runs it in node and matches ORT on the original."""
    original = mlp()
    art = compile_wasm(original, tmp_path, "bsr:4x4", verify=False)
    x = np.random.default_rng(11).standard_normal((5, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    cmd = [sys.executable, "-m", "sparsec.cli", "run", str(art), "--input", f"x={tmp_path / 'x.npy'}"]
    res = subprocess.run([*cmd, "-o", str(tmp_path / "out.npz")], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    got = np.load(tmp_path / "out.npz")["y"]
    assert relative_error(got, reference_outputs(original, {"x": x})[0]) < TOLERANCE
    bench = [sys.executable, "-m", "sparsec.cli", "bench", str(art), "--baseline", str(tmp_path / "m.onnx")]
    res = subprocess.run(bench, capture_output=True, text=True, check=False)
    assert res.returncode == 2 and res.stderr.startswith("error:") and len(res.stderr.strip().splitlines()) == 1
