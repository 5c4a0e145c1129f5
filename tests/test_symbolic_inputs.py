"""Inputs as exporters declare them (issue 15, first part): -1 dims read as symbolic with a warning, verification sizes
the model accepts for symbolic dims --dim leaves unset, unnamed dims addressed as INPUT[AXIS], one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from sparsec.cli import main
from sparsec.compiler import compile_model
from sparsec.errors import SparsecError
from sparsec.frontend import load_model
from sparsec.node import sparse_protos
from sparsec.options import CompileOptions
from sparsec.verify import accepted_dims, random_feeds, unset_dims
from tests.passes.graphs import weight


def _save(m: onnx.ModelProto, path: Path) -> Path:
    onnx.save(m, str(path))
    return path


def pooled(batch: int | str = -1) -> onnx.ModelProto:
    """A 1x1 conv, two 2x2 stride-2 max pools, Resize x4 and a residual Add with the conv: runs only when height and
    width are multiples of 4 or 1 (ORT pools 1 to 1): sparsec's first guess, 2, fails; batch declared ``batch``."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((8, 8, 1, 1)) * (rng.random((8, 8, 1, 1)) < 0.3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("MaxPool", ["c"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("MaxPool", ["p1"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Resize", ["p2", "", "scales"], ["up"], mode="nearest"),
        helper.make_node("Add", ["c", "up"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 8, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 8, "h", "w"])],
        initializer=[
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(np.array([1, 1, 4, 4], np.float32), "scales"),
        ],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def mlp_minus_one() -> onnx.ModelProto:
    """x[-1, 24] -> MatMul (sparse) -> Relu -> y[-1, 16], as paddle2onnx declares a batch."""
    w = np.ascontiguousarray(weight(np.random.default_rng(1), 16, 24, density=0.2).T)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="fc"), helper.make_node("Relu", ["h"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 24])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 16])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_minus_one_dims_are_read_as_symbolic_with_a_warning(tmp_path: Path) -> None:
    said: list[str] = []
    m = load_model(_save(mlp_minus_one(), tmp_path / "m.onnx"), said.append)
    dim = m.graph.input[0].type.tensor_type.shape.dim[0]
    assert not dim.HasField("dim_value") and not dim.dim_param
    assert said == ["warning: 2 dimensions declared negative (x[0], y[0]) are read as symbolic"]


def test_minus_one_model_compiles_sparse_and_verifies(tmp_path: Path) -> None:
    """Numeric: verification ran (per layer too) on random inputs against ORT on the original."""
    src = _save(mlp_minus_one(), tmp_path / "m.onnx")
    res = compile_model(src, tmp_path / "m.sparsec", CompileOptions(format="csr", verify=True))
    assert [la["format"] for la in res.layers] == ["csr"]
    assert res.checked == "1/1 sparse layers checked" and max(res.errors.values()) <= 1e-4


def test_verification_finds_sizes_the_model_accepts(tmp_path: Path) -> None:
    m = load_model(_save(pooled(), tmp_path / "p.onnx"))
    assert unset_dims(m, {}) == ["x[0]", "h", "w"]
    # 2 failed; the graph implies h = w = 4 (pooled by 4, resized back and added): tried before the next guess
    assert accepted_dims(m, {}) == {"x[0]": 2, "h": 4, "w": 4}
    with pytest.raises(SparsecError, match=r"symbolic dims x\[0\], w .*INPUT\[AXIS\]=N for an unnamed one"):
        accepted_dims(m, {"h": 2})  # no size of the others helps
    assert accepted_dims(m, {"h": 8, "w": 8}) == {"h": 8, "w": 8, "x[0]": 2}  # batch 2 runs with h, w given
    assert unset_dims(m, {"h": 8, "w": 8, "x[0]": 3}) == []
    assert random_feeds(m, {"h": 8, "w": 12, "x[0]": 3})["x"].shape == (3, 8, 8, 12)
    res = compile_model(tmp_path / "p.onnx", tmp_path / "p.sparsec", CompileOptions(verify=True))
    assert res.errors and max(res.errors.values()) <= 1e-4


def test_no_accepted_size_is_one_line_naming_dims_and_flag(tmp_path: Path) -> None:
    """A model that runs only at n=5: sparsec's guesses all fail; the error says so without blaming the model."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 1])],
        initializer=[numpy_helper.from_array(np.array([5, 1], np.int64), "shape")],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(
        SparsecError, match=r"none of the sizes sparsec tried \(2, 1, 32, 224\) for its symbolic dims n "
    ):
        accepted_dims(m, {})
    result = CliRunner().invoke(
        main, ["compile", str(_save(m, tmp_path / "r.onnx")), "-o", str(tmp_path / "r.sparsec")]
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert (
        lines[-1].startswith("error: ONNX Runtime runs the model with none of the sizes")
        and "--dim NAME=N" in lines[-1]
    )
    assert "internal error" not in result.output and not (tmp_path / "r.sparsec").exists()
    ok = CliRunner().invoke(
        main, ["compile", str(tmp_path / "r.onnx"), "-o", str(tmp_path / "r.sparsec"), "--dim", "n=5"]
    )
    assert ok.exit_code == 0, ok.output


def test_bench_sizes_unnamed_dims_and_reports_errors_in_one_line(tmp_path: Path) -> None:
    src = _save(mlp_minus_one(), tmp_path / "m.onnx")
    compile_model(src, tmp_path / "m.sparsec", CompileOptions(format="csr", verify=False))
    args = ["bench", str(tmp_path / "m.sparsec"), "--baseline", str(src), "--repeat", "3", "--json"]
    ok = CliRunner().invoke(main, [*args, "--dim", "x[0]=4"])
    assert ok.exit_code == 0, ok.output
    other = _save(pooled(batch=1), tmp_path / "p.onnx")  # a baseline whose inputs the artifact does not take
    bad = CliRunner().invoke(main, ["bench", str(tmp_path / "m.sparsec"), "--baseline", str(other), "--repeat", "3"])
    assert bad.exit_code == 2 and "internal error" not in bad.output
    assert bad.output.strip().splitlines()[-1].startswith("error: the artifact cannot run the bench inputs")


def test_input_shape_specialises_the_artifact_to_static_conv_kernels(tmp_path: Path) -> None:
    src = _save(pooled(), tmp_path / "p.onnx")
    loose = compile_model(src, tmp_path / "loose.sparsec", CompileOptions(format="csr", verify=False))
    assert [la["format"] for la in loose.layers] == ["csr"]  # spatial size unknown: sized at run time
    loose_ctx = next(
        a.s.decode()
        for a in sparse_protos(onnx.load(str(loose.artifact / "model.onnx")))[0].attribute
        if a.name == "ep_cache_context"
    )
    assert ";H=0;W=0;" in loose_ctx
    said: list[str] = []
    opts = CompileOptions(format="csr", verify=True, input_shapes={"x": [1, 8, 32, 32]})
    res = compile_model(src, tmp_path / "p.sparsec", opts, progress=said.append)
    assert [la["format"] for la in res.layers] == ["csr"] and res.checked == "1/1 sparse layers checked"
    assert max(res.errors.values()) <= 1e-4
    assert "input shapes fixed: x=[1,8,32,32] (the artifact takes only these)" in said
    out = onnx.load(str(res.artifact / "model.onnx"))
    assert [d.dim_value for d in out.graph.input[0].type.tensor_type.shape.dim] == [1, 8, 32, 32]
    ctx = next(a.s.decode() for a in sparse_protos(out)[0].attribute if a.name == "ep_cache_context")
    assert ";H=32;W=32;" in ctx  # specialised: a static kernel
    manifest = json.loads((res.artifact / "manifest.json").read_text())
    assert manifest["options"]["input_shapes"] == {"x": [1, 8, 32, 32]}
    assert manifest["inputs"][0]["shape"] == [1, 8, 32, 32]


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("y=1,8,32,32", "--input-shape y: the model has no input 'y' (inputs: x)"),
        ("x=1,8,32", "--input-shape x: 3 dims given, the input has 4 ([?, 8, h, w])"),
        ("x=1,4,32,32", "--input-shape x: dim 1 is 8 in the model, not 4 ([?, 8, h, w])"),
        ("x=1,8,30,32", "--input-shape: the model does not take these shapes ("),
        ("x=1,8,a,32", "bad --input-shape 'x=1,8,a,32': expected NAME=D0,D1,... with positive integers"),
    ],
)
def test_bad_input_shapes_are_one_line_errors(tmp_path: Path, flag: str, message: str) -> None:
    src = _save(pooled(), tmp_path / "p.onnx")
    result = CliRunner().invoke(main, ["compile", str(src), "-o", str(tmp_path / "p.sparsec"), "--input-shape", flag])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith(f"error: {message}"), result.output
    assert not (tmp_path / "p.sparsec").exists()


def test_inspect_and_bench_take_input_shapes(tmp_path: Path) -> None:
    src = _save(pooled(), tmp_path / "p.onnx")
    shape = ["--input-shape", "x=1,8,32,32"]
    inspected = CliRunner().invoke(main, ["inspect", str(src), "--json", *shape])
    assert inspected.exit_code == 0, inspected.output
    assert json.loads(inspected.output)["weights"][0]["shape"] == [8, 8]
    res = compile_model(src, tmp_path / "p.sparsec", CompileOptions(format="csr", input_shapes={"x": [1, 8, 32, 32]}))
    bench = CliRunner().invoke(main, ["bench", str(res.artifact), "--baseline", str(src), "--repeat", "3", *shape])
    assert bench.exit_code == 0, bench.output
    assert "speedup" in bench.output


def _custom_op_model() -> onnx.ModelProto:
    """x -> a custom-domain op (ONNX's inference leaves its output without a rank) -> MatMul."""
    w = numpy_helper.from_array(np.ones((8, 4), np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("Mystery", ["x"], ["h"], domain="custom"), helper.make_node("MatMul", ["h", "w"], ["y"])],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        [w],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)])


def test_symbolic_shape_inference_writes_nothing_where_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ORT's symbolic inference gives the custom op's output a rank; where it stays incomplete ONNX's shapes stand and
    nothing lands in the working directory (its infer_shapes() would save the model and its weights there)."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    from sparsec.shapes import symbolic_where_unknown

    monkeypatch.chdir(tmp_path)
    model = _custom_op_model()
    better = symbolic_where_unknown(model)
    assert better is not model
    assert [len(v.type.tensor_type.shape.dim) for v in better.graph.value_info if v.name == "h"] == [2]

    def incomplete(self: SymbolicShapeInference, start_sympy_data: object = None) -> bool:
        self.run_ = False
        return False

    monkeypatch.setattr(SymbolicShapeInference, "_infer_impl", incomplete)
    assert symbolic_where_unknown(model) is model
    assert list(tmp_path.iterdir()) == []
