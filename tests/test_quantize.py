"""``sparsec quantize`` (onnxruntime.quantization): QDQ keeps pruned weights exactly zero and compiles sparse against
ORT on the quantized model; dynamic writes MatMulInteger; calibration folders are read as documented; bad input is
one line and writes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, numpy_helper

from models.synthetic import transformer_ffn
from sparsec.cli import main
from sparsec.prune_cli import prune_file


@pytest.fixture
def pruned(tmp_path: Path) -> Path:
    src = tmp_path / "ffn.onnx"
    onnx.save(transformer_ffn(density=1.0), str(src))
    out = tmp_path / "ffn90.onnx"
    prune_file(src, "unstructured:0.9", out)
    return out


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_qdq_keeps_pruned_weights_zero_and_compiles_sparse(pruned: Path, tmp_path: Path) -> None:
    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions

    out = tmp_path / "q.onnx"
    code, stdout, stderr = run("quantize", str(pruned), "-o", str(out))
    assert code == 0 and stdout.startswith("quantized 3 weights of ffn90.onnx to int8 (qdq, int8 activations:"), stderr
    assert "calibrated on 8 random inputs" in stderr
    q = onnx.load(str(out))
    int8 = [
        numpy_helper.to_array(t) for t in q.graph.initializer if t.data_type == TensorProto.INT8 and len(t.dims) == 2
    ]
    assert len(int8) == 3 and all(abs(np.count_nonzero(a) / a.size - 0.1) < 0.01 for a in int8)  # zeros stay zero
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in q.graph.node}
    res = compile_model(out, tmp_path / "q.sparsec", CompileOptions(format="csr"))
    assert [la["format"] for la in res.layers] == ["csr"] * 3 and max(res.errors.values()) <= 1e-4


def test_calibration_folder_is_used(pruned: Path, tmp_path: Path) -> None:
    folder = tmp_path / "calib"
    folder.mkdir()
    np.save(folder / "x.npy", np.random.default_rng(0).standard_normal((4, 2, 3, 48)).astype(np.float32) * 5)
    out = tmp_path / "q.onnx"
    code, _, stderr = run("quantize", str(pruned), "-o", str(out), "--calibration", str(folder))
    assert code == 0 and "random inputs" not in stderr, stderr
    np.save(folder / "x.npy", np.zeros((0, 2, 3, 48), np.float32))
    code, _, stderr = run("quantize", str(pruned), "-o", str(tmp_path / "q2.onnx"), "--calibration", str(folder))
    assert code == 2 and "samples on axis 0" in stderr and not (tmp_path / "q2.onnx").exists()


def test_qoperator_writes_qlinearmatmul_that_compiles_sparse_to_orts_bytes(tmp_path: Path) -> None:
    """The whole user path: prune, ``sparsec quantize --mode qoperator``, compile with no flags: ORT's bytes."""
    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions
    from sparsec.runtime import InferenceSession

    src, pruned, out = tmp_path / "ffn.onnx", tmp_path / "p.onnx", tmp_path / "qop.onnx"
    onnx.save(transformer_ffn(d=384, hidden=1536, density=1.0), str(src))
    prune_file(src, "unstructured:0.9", pruned)
    code, stdout, stderr = run("quantize", str(pruned), "-o", str(out), "--mode", "qoperator")
    assert code == 0 and "(qoperator, uint8 activations: " in stdout and "QLinearMatMul" in stdout, (stdout, stderr)
    assert "random inputs" in stderr  # no --calibration: said so
    q = onnx.load(str(out))
    layers = [n for n in q.graph.node if n.op_type == "QLinearMatMul"]
    assert layers
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    assert all(inits[n.input[2]].dtype == np.uint8 for n in layers)  # uint8 activations
    assert all(np.mean(inits[n.input[3]] == 0) >= 0.89 for n in layers)  # pruned weights stay zero
    res = compile_model(out, tmp_path / "qop.sparsec", CompileOptions())
    sparse = [la for la in res.layers if la["format"] != "dense"]
    assert sparse and {la["op"] for la in sparse} == {"QLinearMatMul"} and max(res.errors.values()) == 0.0
    import onnxruntime as ort

    feeds = {q.graph.input[0].name: np.random.default_rng(4).standard_normal((2, 3, 384)).astype(np.float32)}
    want = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_array_equal(InferenceSession(res.artifact).run(None, feeds)[0], want)


@pytest.mark.parametrize(("mode", "act"), [("qoperator", "int8"), ("qdq", "uint8")])
def test_activations_type_is_the_users(pruned: Path, tmp_path: Path, mode: str, act: str) -> None:
    out = tmp_path / "a.onnx"
    code, stdout, stderr = run("quantize", str(pruned), "-o", str(out), "--mode", mode, "--activations", act)
    assert code == 0 and f"({mode}, {act} activations: " in stdout, stderr
    q = onnx.load(str(out))
    quantize = [n for n in q.graph.node if n.op_type == "QuantizeLinear"]
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    assert quantize and all(inits[n.input[2]].dtype == np.dtype(act) for n in quantize)


def test_dynamic_writes_matmulinteger(pruned: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.onnx"
    code, stdout, _ = run("quantize", str(pruned), "-o", str(out), "--mode", "dynamic")
    assert code == 0 and "(dynamic: DynamicQuantizeLinear, MatMulInteger)" in stdout
    assert "MatMulInteger" in {n.op_type for n in onnx.load(str(out)).graph.node}


@pytest.mark.parametrize(
    "args,match",
    [
        (["--mode", "int4"], "bad --mode 'int4': expected one of qdq, dynamic, qoperator"),
        (["--mode", "dynamic", "--calibration", "{tmp}"], "--calibration is for --mode qdq"),
        (["--mode", "dynamic", "--activations", "int8"], "--activations is for --mode qdq"),
        (["--calibration", "{tmp}/nope"], "not a directory"),
        (["--calibration", "{tmp}"], "no x.npy for input 'x'"),
    ],
)
def test_bad_quantize_input_is_one_line(pruned: Path, tmp_path: Path, args: list[str], match: str) -> None:
    out = tmp_path / "bad.onnx"
    code, stdout, stderr = run(
        "quantize", str(pruned), "-o", str(out), *[a.replace("{tmp}", str(tmp_path)) for a in args]
    )
    assert code == 2 and match in stderr and len(stderr.strip().splitlines()) == 1 and stdout == "", stderr
    assert not out.exists()


def test_weights_in_constant_nodes_are_quantized(pruned: Path, tmp_path: Path) -> None:
    # paddle2onnx writes every weight in a Constant node; onnxruntime.quantization quantizes initializers only
    m = onnx.load(str(pruned))
    as_constants = {t.name: t for t in m.graph.initializer if t.name in ("w1", "w2", "w3", "b1")}
    kept = [t for t in m.graph.initializer if t.name not in as_constants]
    del m.graph.initializer[:]
    m.graph.initializer.extend(kept)
    consts = [onnx.helper.make_node("Constant", [], [name], value=t) for name, t in as_constants.items()]
    nodes = [*consts, *m.graph.node]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    src = tmp_path / "constants.onnx"
    onnx.save(m, str(src))
    code, out, err = run("quantize", str(src), "-o", str(tmp_path / "q.onnx"), "--mode", "qdq")
    assert code == 0, err
    assert "3 weights and biases in Constant nodes made initializers" in err and "quantized 3 weights" in out
    q = onnx.load(str(tmp_path / "q.onnx"))
    assert not [n for n in q.graph.node if n.op_type == "Constant" and n.output[0] in ("w1", "w2", "w3")]
