"""Issue 8, compile side: every kind of bad or unusual model either compiles with outputs equal to ORT's on the
original, or fails with one ``error:`` line, exit status 2 and no artifact left behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from models.synthetic import sparse_matrix
from sparsec.cli import main
from sparsec.verify import compare_artifact, random_feeds

K, N = 32, 16


def _weight(density: float = 0.1, seed: int = 0) -> np.ndarray:
    return sparse_matrix(np.random.default_rng(seed), (K, N), density)


def matmul_model(
    w: np.ndarray | None = None,
    x_shape: list[int | str] | None = None,
    elem: int = TensorProto.FLOAT,
    opset: int | None = 17,
    extra: list[onnx.NodeProto] | None = None,
    out: str = "y",
    out_shape: list[int | str] | None = None,
    constant_weight: bool = False,
) -> onnx.ModelProto:
    """x @ w (+ extra nodes reading y), with w an initializer or a Constant node."""
    w = _weight() if w is None else w
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"), *(extra or [])]
    inits = []
    if constant_weight:
        nodes.insert(0, helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(w, "wv")))
    else:
        inits.append(numpy_helper.from_array(w, "w"))
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", elem, x_shape or ["batch", K])],
        [helper.make_tensor_value_info(out, elem, out_shape or ["batch", N])],
        initializer=inits,
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)] if opset else [])
    if opset is None:
        del model.opset_import[:]
    return model


def _cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def _error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("[sparsec] ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _with_nan(value: float) -> onnx.ModelProto:
    w = _weight()
    w[3, 5] = value
    return matmul_model(w)


def _conv_with_nan() -> onnx.ModelProto:
    from tests.conv_graphs import geometry_model

    m = geometry_model(0.3)
    w = numpy_helper.to_array(m.graph.initializer[0]).copy()
    w.flat[7] = np.nan
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, m.graph.initializer[0].name))
    return m


def _subgraph_weight_in_if() -> onnx.ModelProto:
    """A sparse MatMul in the main graph and one inside an If branch reading an outer-scope initializer."""
    w2 = numpy_helper.from_array(sparse_matrix(np.random.default_rng(3), (N, N), 0.1), "w2")
    branch_out = helper.make_tensor_value_info("t", TensorProto.FLOAT, ["batch", N])
    then_g = helper.make_graph([helper.make_node("MatMul", ["y", "w2"], ["t"])], "then", [], [branch_out])
    else_g = helper.make_graph([helper.make_node("Relu", ["y"], ["t"])], "else", [], [branch_out])
    node = helper.make_node("If", ["c"], ["z"], then_branch=then_g, else_branch=else_g)
    m = matmul_model(extra=[node], out="z")
    m.graph.initializer.append(w2)
    m.graph.input.append(helper.make_tensor_value_info("c", TensorProto.BOOL, []))
    return m


def _loop_reading_outer_constant() -> onnx.ModelProto:
    """A Loop whose body adds an outer-scope Constant node's value: the Constant must survive the passes."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["acc_in", "shift"], ["acc_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, ["batch", N]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, ["batch", N]),
        ],
    )
    shift = helper.make_node("Constant", [], ["shift"], value=numpy_helper.from_array(np.float32(0.25)))
    trips = helper.make_node("Constant", [], ["trips"], value=numpy_helper.from_array(np.int64(3)))
    cond = helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(np.bool_(True)))
    loop = helper.make_node("Loop", ["trips", "cond", "y"], ["z"], body=body)
    return matmul_model(extra=[shift, trips, cond, loop], out="z")


def _unsupported_ops() -> onnx.ModelProto:
    extra = [
        helper.make_node("Einsum", ["y"], ["e"], equation="ij->ji"),
        helper.make_node("Constant", [], ["axis"], value=numpy_helper.from_array(np.int64(0))),
        helper.make_node("CumSum", ["e", "axis"], ["z"]),
    ]
    return matmul_model(extra=extra, out="z", out_shape=[N, "batch"])


COMPILES: dict[str, Callable[[], onnx.ModelProto]] = {
    "constant-node weight": lambda: matmul_model(constant_weight=True),
    "If subgraph": _subgraph_weight_in_if,
    "Loop reading an outer Constant": _loop_reading_outer_constant,
    "ops sparsec does not compile": _unsupported_ops,
}


@pytest.mark.parametrize("case", sorted(COMPILES))
def test_compiles_and_matches_ort(tmp_path: Path, case: str) -> None:
    model = COMPILES[case]()
    src = tmp_path / "m.onnx"
    onnx.save(model, str(src))
    code, out, err = _cli("compile", str(src), "--format", "csr", "-o", str(tmp_path / "m.sparsec"))
    assert code == 0, err
    assert "1/1 layers sparse" in out, out
    feeds = random_feeds(model, {"batch": 5}, seed=77)
    errors = compare_artifact(model, tmp_path / "m.sparsec", feeds)
    assert errors and max(errors.values()) < 1e-4, errors


@pytest.mark.parametrize(
    "dtype,elem",
    [(np.float16, TensorProto.FLOAT16), (np.float64, TensorProto.DOUBLE), (np.int32, TensorProto.INT32)],
)
def test_non_float32_weights_left_to_ort(tmp_path: Path, dtype: type, elem: int) -> None:
    model = matmul_model(_weight().astype(dtype), elem=elem)
    src = tmp_path / "m.onnx"
    onnx.save(model, str(src))
    code, out, err = _cli("inspect", str(src))
    assert code == 0, err
    assert f"weight is {np.dtype(dtype).name}, sparse kernels take float32: left to ONNX Runtime" in out
    assert f"MatMul {N}x{K}" in out  # the real shape, not a placeholder
    code, out, err = _cli("compile", str(src), "-o", str(tmp_path / "m.sparsec"))
    assert code == 0, err
    assert "0/1 layers sparse" in out
    feeds = random_feeds(model, {"batch": 3}, seed=5)
    errors = compare_artifact(model, tmp_path / "m.sparsec", feeds)
    assert errors == {"y": 0.0}


def _custom_domain_op() -> onnx.ModelProto:
    m = matmul_model(
        extra=[helper.make_node("Frobnicate", ["y"], ["z"], domain="com.example")], out="z", out_shape=["a"]
    )
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    return m


def _with_opset(v: int) -> onnx.ModelProto:
    m = matmul_model()
    m.opset_import[0].version = v
    return m


def _lying_initializer() -> onnx.ModelProto:
    m = matmul_model()
    m.graph.initializer[0].dims[:] = [K, 2**40]  # 2 KiB of data declared as 128 TiB
    return m


FAILS: dict[str, tuple[Callable[[], onnx.ModelProto | bytes], str]] = {
    "empty file": (lambda: b"", "not a valid ONNX model"),
    "garbage": (lambda: b"\x08\x07\xff\xfe garbage", "not a valid ONNX model"),
    "truncated": (lambda: matmul_model().SerializeToString()[:150], "not a valid ONNX model"),
    "no opset": (lambda: matmul_model(opset=None), "opset"),
    "opset too old": (lambda: _with_opset(1), "ONNX opset 1 is not supported"),
    "opset from the future": (lambda: _with_opset(99), "ONNX opset 99 is not supported"),
    "inconsistent shapes": (lambda: matmul_model(x_shape=["batch", K + 1]), "shape inference failed"),
    "NaN weight": (lambda: _with_nan(float("nan")), "has 1 NaN/Inf values"),
    "Inf weight": (lambda: _with_nan(float("-inf")), "has 1 NaN/Inf values"),
    "NaN conv weight": (_conv_with_nan, "has 1 NaN/Inf values"),
    "enormous dimension": (lambda: matmul_model(x_shape=[2**40, K]), "declares dimension 1099511627776"),
    "op ORT does not know": (_custom_domain_op, "ONNX Runtime cannot run the original model"),
    "initializer larger than its data": (_lying_initializer, "too small for the declared shape"),
}


@pytest.mark.parametrize("case", sorted(FAILS))
def test_bad_model_one_line_exit_2(tmp_path: Path, case: str) -> None:
    build, match = FAILS[case]
    model = build()
    src = tmp_path / "bad.onnx"
    src.write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    code, _, err = _cli("compile", str(src), "-o", str(tmp_path / "bad.sparsec"))
    assert code == 2, err
    assert match in _error_line(err)
    assert [p.name for p in tmp_path.iterdir()] == ["bad.onnx"]  # no artifact, no temporary directory


def test_nonfinite_weight_reported_by_inspect(tmp_path: Path) -> None:
    src = tmp_path / "m.onnx"
    onnx.save(_with_nan(float("nan")), str(src))
    code, out, err = _cli("inspect", str(src))
    assert code == 0, err
    assert "dense: weight has 1 NaN/Inf values" in out


def test_huge_symbolic_dim_for_verify(tmp_path: Path) -> None:
    src = tmp_path / "m.onnx"
    onnx.save(matmul_model(), str(src))
    code, _, err = _cli("compile", str(src), "--dim", f"batch={2**30}", "-o", str(tmp_path / "m.sparsec"))
    assert code == 2
    assert "too large for a random test input" in _error_line(err)
    assert not (tmp_path / "m.sparsec").exists()


def test_dense_int8_layer_listed_and_left_to_ort(tmp_path: Path) -> None:
    # every weight nonzero, 256x256: no sparse kernel beats ORT's int8 MatMul (a 16x32 one can win on its node
    # overhead alone with some ISAs' cost tables)
    k = n = 256
    rng = np.random.default_rng(2)
    w = (rng.integers(1, 8, (k, n)) * rng.choice([-1, 1], (k, n))).astype(np.int8)
    g = helper.make_graph(
        [
            helper.make_node("MatMulInteger", ["x", "w", "xz"], ["yi"], name="qmm"),
            helper.make_node("Cast", ["yi"], ["y"], to=TensorProto.FLOAT),
        ],
        "q",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, ["batch", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.uint8(3), "xz")],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    src = tmp_path / "q.onnx"
    onnx.save(model, str(src))
    code, out, err = _cli("inspect", str(src))
    assert code == 0, err
    assert "qmm" in out and f"{n}x{k}" in out
    assert "MatMulInteger" in out and "dense: predicted" in out
    code, out, err = _cli("compile", str(src), "-o", str(tmp_path / "q.sparsec"))
    assert code == 0, err
    assert "0/1 layers sparse" in out
