"""sparsec prune, per model and file: W[N, K] orientation per op, shared weights, atomic output, one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from models.synthetic import transformer_ffn
from sparsec import prune_cli
from sparsec.cli import main
from sparsec.errors import SparsecError
from sparsec.prune import parse_pattern, prune_model, prune_weight
from sparsec.prune_cli import prune_file
from tests.prune_helpers import check_nm, initializers, rand

# ------------------------------------------------------------------------------------------------ prune_model


def layer_model() -> onnx.ModelProto:
    """MatMul B[K, N], Gemm transB=0 and transB=1, Conv, a shared weight (MatMul then Gemm transB=1) and a computed
    weight (Transpose of an initializer). K and N differ so a wrong orientation changes the result."""
    inits = {
        "mm": rand(8, 6, seed=10),  # MatMul: [K=8, N=6]
        "g0": rand(6, 12, seed=11),  # Gemm transB=0: [K=6, N=12]
        "g1": rand(5, 12, seed=12),  # Gemm transB=1: [N=5, K=12]
        "conv": rand(3, 2, 3, 3, seed=13),  # Conv: [Cout=3, Cin=2, 3, 3] -> W[3, 18]
        "shared": rand(8, 8, seed=14),  # MatMul (W = B.T) first, then Gemm transB=1 (W = B)
        "raw": rand(4, 8, seed=15),  # Transpose(raw) -> MatMul: computed, not pruned
        "bias": rand(12, seed=16),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "mm"], ["h0"], name="mm"),
        helper.make_node("Gemm", ["h0", "g0", "bias"], ["h1"], name="g0", transB=0),
        helper.make_node("Gemm", ["h1", "g1"], ["y0"], name="g1", transB=1, alpha=0.5),
        helper.make_node("Conv", ["img", "conv"], ["y1"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("MatMul", ["x", "shared"], ["s0"], name="s_mm"),
        helper.make_node("Gemm", ["s0", "shared"], ["y2"], name="s_gemm", transB=1),
        helper.make_node("Transpose", ["raw"], ["raw_t"], name="t"),
        helper.make_node("MatMul", ["x", "raw_t"], ["y3"], name="computed"),
    ]
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "layers",
        [helper.make_tensor_value_info("x", f, [2, 8]), helper.make_tensor_value_info("img", f, [1, 2, 5, 5])],
        [
            helper.make_tensor_value_info("y0", f, [2, 5]),
            helper.make_tensor_value_info("y1", f, [1, 3, 5, 5]),
            helper.make_tensor_value_info("y2", f, [2, 8]),
            helper.make_tensor_value_info("y3", f, [2, 4]),
        ],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_prune_model_orientation_per_op() -> None:
    model = layer_model()
    before = initializers(model)
    pruned, stats = prune_model(model, parse_pattern("nm:2:4"))
    after = initializers(pruned)
    assert [(s["name"], s["op"]) for s in stats] == [
        ("mm", "MatMul"),
        ("g0", "Gemm"),
        ("g1", "Gemm"),
        ("conv", "Conv"),
        ("shared", "MatMul"),
        ("raw", "MatMul"),
    ]
    # W[N, K] of each layer: the N:M groups must run along K
    check_nm(before["mm"].T, after["mm"].T, 2, 4)  # MatMul: groups run down the rows of B[K, N]
    check_nm(before["g0"].T, after["g0"].T, 2, 4)  # Gemm transB=0: W = B.T
    check_nm(before["g1"], after["g1"], 2, 4)  # Gemm transB=1: W = B
    check_nm(before["conv"].reshape(3, -1), after["conv"].reshape(3, -1), 2, 4)  # Conv: W = weight.reshape(Cout, -1)
    check_nm(before["shared"].T, after["shared"].T, 2, 4)  # pruned once, as its first use (MatMul) sees it
    check_nm(before["raw"], after["raw"], 2, 4)  # MatMul(x, Transpose(raw)): W = raw, groups along its rows
    np.testing.assert_array_equal(after["bias"], before["bias"])
    for s in stats:
        w = after[s["name"]]
        assert s["shape"] == list(w.shape) == list(before[s["name"]].shape)
        assert s["density_before"] == 1.0 and s["density_after"] == np.count_nonzero(w) / w.size <= 2 / 3
    # the input model is untouched
    np.testing.assert_array_equal(initializers(model)["mm"], before["mm"])


def test_shared_weight_pruned_once() -> None:
    model = layer_model()
    shared = initializers(model)["shared"]
    pruned, stats = prune_model(model, parse_pattern("nm:1:4"))
    assert [s["name"] for s in stats].count("shared") == 1
    got = initializers(pruned)["shared"]
    np.testing.assert_array_equal(got, prune_weight(shared.T, parse_pattern("nm:1:4")).T)
    # pruning it again as the Gemm transB=1 use sees it would have removed more values
    assert np.count_nonzero(prune_weight(got, parse_pattern("nm:1:4"))) < np.count_nonzero(got)


def test_pruned_model_runs_on_ort_and_matches_numpy() -> None:
    model = layer_model()
    pruned, _ = prune_model(model, parse_pattern("unstructured:0.5"))
    w = initializers(pruned)
    x = rand(2, 8, seed=20)
    img = rand(1, 2, 5, 5, seed=21)
    sess = ort.InferenceSession(pruned.SerializeToString(), providers=["CPUExecutionProvider"])
    y0, y1, y2, y3 = sess.run(None, {"x": x, "img": img})
    ref0 = 0.5 * ((x @ w["mm"] @ w["g0"] + w["bias"]) @ w["g1"].T)
    np.testing.assert_allclose(y0, ref0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(y2, (x @ w["shared"]) @ w["shared"].T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(y3, x @ w["raw"].T, rtol=1e-4, atol=1e-5)
    assert y1.shape == (1, 3, 5, 5)
    dense = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert not np.allclose(dense.run(["y0"], {"x": x, "img": img})[0], y0)  # pruning changed the weights


def test_transformer_ffn_all_three_layers() -> None:
    pruned, stats = prune_model(transformer_ffn(density=1.0), parse_pattern("block:4x4:0.5"))
    assert [(s["name"], s["op"]) for s in stats] == [("w1", "MatMul"), ("w2", "MatMul"), ("w3", "Gemm")]
    assert all(s["density_after"] == pytest.approx(0.5) for s in stats)  # shapes are multiples of 4
    x = rand(2, 3, 48)
    y, z = ort.InferenceSession(pruned.SerializeToString()).run(None, {"x": x})
    assert y.shape == (2, 3, 48) and z.shape == (6, 20)


def test_non_float_and_wrong_rank_weights_are_skipped() -> None:
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["xd", "wd"], ["yd"]),  # float64 weight
            helper.make_node("MatMul", ["x3", "w3"], ["y3"]),  # rank-3 (batched) weight
        ],
        "g",
        [
            helper.make_tensor_value_info("xd", TensorProto.DOUBLE, [2, 4]),
            helper.make_tensor_value_info("x3", f, [2, 3, 4]),
        ],
        [helper.make_tensor_value_info("yd", TensorProto.DOUBLE, [2, 4]), helper.make_tensor_value_info("y3", f, None)],
        initializer=[
            numpy_helper.from_array(np.ones((4, 4)), "wd"),
            numpy_helper.from_array(np.ones((2, 4, 4), np.float32), "w3"),
        ],
    )
    with pytest.raises(SparsecError, match=r"^no MatMul/Gemm/Conv weight to prune in toy\.onnx"):
        prune_model(helper.make_model(graph), parse_pattern("nm:2:4"), label="toy.onnx")


def test_weights_in_constant_nodes_are_pruned_and_compile_sparse(tmp_path: Path) -> None:
    """paddle2onnx keeps every weight in a Constant node: prune finds them (oriented per op), and the pruned model
    compiles with sparse layers that verify against ORT."""
    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions

    b1, w2 = rand(24, 32, seed=1), rand(16, 32, seed=2)  # MatMul B[K, N]; Gemm transB=1 W[N, K]
    nodes = [
        helper.make_node("Constant", [], ["b1"], value=numpy_helper.from_array(b1)),
        helper.make_node("Constant", [], ["w2"], value=numpy_helper.from_array(w2)),
        helper.make_node("MatMul", ["x", "b1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2"], ["y"], name="fc2", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "paddle_like",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 24])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 16])],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    out, stats = prune_model(m, parse_pattern("unstructured:0.9"))
    assert [(st["name"], st["op"], st["shape"]) for st in stats] == [
        ("b1", "MatMul", [24, 32]),
        ("w2", "Gemm", [16, 32]),
    ]
    assert all(abs(st["density_after"] - 0.1) < 0.01 for st in stats)
    pruned = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in out.graph.node if n.op_type == "Constant"}
    np.testing.assert_array_equal(pruned["b1"].T, prune_weight(b1.T, parse_pattern("unstructured:0.9")))
    assert not out.graph.initializer and numpy_helper.to_array(m.graph.node[0].attribute[0].t).all()  # input kept
    src = tmp_path / "p.onnx"
    onnx.save(out, str(src))
    res = compile_model(src, tmp_path / "p.sparsec", CompileOptions(format="csr", verify=True))
    assert [la["format"] for la in res.layers] == ["csr", "csr"] and max(res.errors.values()) <= 1e-4


# ------------------------------------------------------------------------------------------------ prune_file


@pytest.fixture
def dense_model(tmp_path: Path) -> Path:
    p = tmp_path / "dense.onnx"
    onnx.save(transformer_ffn(density=1.0), str(p))
    return p


def test_prune_file_writes_model_and_summary(dense_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.onnx"
    msg = prune_file(dense_model, "nm:2:4", out)
    assert msg == f"pruned 3 weights (nm:2:4): 10,176 values, density 100.0% -> 50.0%; wrote {out}"
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    w = initializers(model)
    check_nm(initializers(onnx.load(str(dense_model)))["w1"].T, w["w1"].T, 2, 4)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    mode = out.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_prune_file_overwrites_in_place(dense_model: Path) -> None:
    prune_file(dense_model, "unstructured:0.9", dense_model)
    w = initializers(onnx.load(str(dense_model)))
    assert np.count_nonzero(w["w1"]) == round(0.1 * w["w1"].size)


def test_prune_file_embeds_external_data(tmp_path: Path) -> None:
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    src = src_dir / "ext.onnx"
    onnx.save(
        transformer_ffn(density=1.0),
        str(src),
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=0,
    )
    source = onnx.load(str(src), load_external_data=False)
    assert all(t.data_location == TensorProto.EXTERNAL for t in source.graph.initializer)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    prune_file(src, "unstructured:0.5", out_dir / "p.onnx")
    assert [p.name for p in out_dir.iterdir()] == ["p.onnx"]
    model = onnx.load(str(out_dir / "p.onnx"), load_external_data=False)
    assert all(t.data_location == TensorProto.DEFAULT for t in model.graph.initializer)
    w = initializers(model)
    assert np.count_nonzero(w["w2"]) == round(0.5 * w["w2"].size)
    np.testing.assert_array_equal(w["b1"], initializers(transformer_ffn(density=1.0))["b1"])


def test_prune_file_bad_pattern_fails_before_reading(tmp_path: Path) -> None:
    with pytest.raises(SparsecError, match="pattern") as e:
        prune_file(tmp_path / "missing.onnx", "random:0.5", tmp_path / "o.onnx")
    assert "\n" not in str(e.value) and "no such file" not in str(e.value)


def test_prune_file_missing_output_dir(dense_model: Path, tmp_path: Path) -> None:
    with pytest.raises(SparsecError, match="output directory does not exist"):
        prune_file(dense_model, "unstructured:0.5", tmp_path / "nope" / "o.onnx")


def test_prune_file_model_without_weights(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    src = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    with pytest.raises(SparsecError) as e:
        prune_file(src, "nm:2:4", tmp_path / "o.onnx")
    assert str(e.value).startswith(f"no MatMul/Gemm/Conv weight to prune in {src}") and "\n" not in str(e.value)
    assert not (tmp_path / "o.onnx").exists()


def test_prune_file_failure_keeps_previous_output(
    dense_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "o.onnx"
    out.write_bytes(b"previous")
    monkeypatch.setattr(prune_cli, "MAX_BYTES", 1000)  # pretend the model is over protobuf's 2 GiB limit
    with pytest.raises(SparsecError, match="2 GiB") as e:
        prune_file(dense_model, "nm:2:4", out)
    assert "\n" not in str(e.value)
    monkeypatch.undo()

    def broken_replace(a: object, b: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prune_cli.os, "replace", broken_replace)
    with pytest.raises(SparsecError, match="cannot write"):
        prune_file(dense_model, "nm:2:4", out)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dense.onnx", "o.onnx"]  # temp file removed


def test_cli_prune(dense_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.onnx"
    r = CliRunner().invoke(main, ["prune", str(dense_model), "--pattern", "block:1x16:0.9", "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("pruned 3 weights (block:1x16:0.9)") and out.is_file()
    r = CliRunner().invoke(main, ["prune", str(dense_model), "--pattern", "nm:4:2", "-o", str(out)])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: bad --pattern")
