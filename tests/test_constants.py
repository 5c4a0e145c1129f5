"""The constants stage (issue 17): initializers listed as graph inputs compile as constants; weights computed by a
constant subgraph are folded; classic CNNs as old exporters wrote them compile all-csr and verify per layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sparsec.compiler import compile_model
from sparsec.errors import SparsecError
from sparsec.options import CompileOptions
from tests.classic_graphs import densenet, shufflenet, squeezenet
from tests.passes.graphs import compile_and_compare, model, ops, stage, weight
from tests.test_verify_layers import break_layer

CLASSIC = {"squeezenet": squeezenet, "shufflenet": shufflenet, "densenet": densenet}


def _sparse_capable(m: onnx.ModelProto) -> int:
    """Convs with group 1 (what the sparse conv kernels take)."""
    return sum(
        1 for n in m.graph.node if n.op_type == "Conv" and all(a.i == 1 for a in n.attribute if a.name == "group")
    )


@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_classic_cnn_with_initializer_inputs_compiles_csr_and_verifies_per_layer(tmp_path: Path, name: str) -> None:
    m = CLASSIC[name]()
    assert len(m.graph.input) > 1 + len(m.graph.node) // 3  # the weights are listed as inputs
    src = tmp_path / f"{name}.onnx"
    onnx.save(m, str(src))
    said: list[str] = []
    res = compile_model(src, tmp_path / "out.sparsec", CompileOptions(format="csr", verify=True), progress=said.append)
    n = _sparse_capable(m)
    assert sum(la["format"] == "csr" for la in res.layers) == n
    assert res.checked == f"{n}/{n} sparse layers checked"
    assert any("also listed as graph inputs" in line and "compiled as constants" in line for line in said)
    out = onnx.load(str(res.artifact / "model.onnx"))
    assert [i.name for i in out.graph.input] == ["data_0"]
    csr = {f"{la['name']}_w_0" for la in res.layers if la["format"] == "csr"}
    assert not csr & {i.name for i in out.graph.initializer}  # the dense copies of sparse weights are gone
    assert max(res.errors.values()) <= 1e-4


def test_compiled_model_runs_without_the_listed_initializers(tmp_path: Path) -> None:
    """Numeric: the artifact takes only the data input and matches ORT on the original (its defaults) on fresh
    random inputs."""
    import onnxruntime as ort

    from sparsec.runtime import InferenceSession
    from sparsec.verify import relative_error

    m = squeezenet(seed=5)
    src = tmp_path / "sq.onnx"
    onnx.save(m, str(src))
    res = compile_model(src, tmp_path / "sq.sparsec", CompileOptions(format="csr", verify=False))
    x = {"data_0": np.random.default_rng(11).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, x)[0]
    got = InferenceSession(res.artifact).run(None, x)[0]
    assert relative_error(got, ref) <= 1e-4


def test_inspect_names_initializers_a_caller_could_override(tmp_path: Path) -> None:
    from sparsec.inspect import format_table, inspect_model

    src = tmp_path / "sq.onnx"
    onnx.save(squeezenet(), str(src))
    report = inspect_model(src)
    assert "conv1_w_0" in report["initializer_inputs"] and "logit_scale" in report["initializer_inputs"]
    assert "lets a caller override them at run time (" in format_table(report)


def test_broken_conv_in_a_saturating_cnn_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = densenet()
    src = tmp_path / "dn.onnx"
    onnx.save(m, str(src))
    break_layer(monkeypatch, 6)  # the 7th conv: conv9 (concats take numbers too)
    # the end outputs pass (within the 1e-4 tolerance); the per-layer check names the broken conv
    with pytest.raises(SparsecError, match=r"sparse layer 'conv9' .*end outputs within"):
        compile_model(src, tmp_path / "dn.sparsec", CompileOptions(format="csr", verify=True))


def _computed_weights() -> onnx.ModelProto:
    """fc1's weight is Constant(float16) -> Cast; fc2 (Gemm) reads Transpose(initializer) and a ConstantOfShape bias."""
    rng = np.random.default_rng(0)
    w16 = np.ascontiguousarray(weight(rng, 24, 20, density=0.3).T).astype(np.float16)
    wt = weight(rng, 16, 24, density=0.3)  # W[N, K]: the graph transposes it into Gemm's B[K, N]
    nodes = [
        helper.make_node("Constant", [], ["w16"], value=numpy_helper.from_array(w16)),
        helper.make_node("Cast", ["w16"], ["w32"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["x", "w32"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Transpose", ["wt"], ["wtt"], perm=[1, 0]),
        helper.make_node("Constant", [], ["n"], value=numpy_helper.from_array(np.array([16], np.int64))),
        helper.make_node(
            "ConstantOfShape", ["n"], ["bias"], value=numpy_helper.from_array(np.array([0.5], np.float32))
        ),
        helper.make_node("Gemm", ["r", "wtt", "bias"], ["y"], name="fc2"),
    ]
    return model(nodes, {"wt": wt}, {"x": ["batch", 20]}, {"y": ["batch", 16]})


def test_weights_computed_from_constants_are_folded_and_go_sparse() -> None:
    """Structural: both layers are found and rewritten; the subgraphs that computed their weights are gone."""
    m = _computed_weights()
    out, layers = stage(m, "rewrite")
    assert [la.name for la in layers] == ["fc1", "fc2"]
    assert all(la.format == "csr" for la in layers)
    assert not {"Cast", "Transpose", "ConstantOfShape"} & set(ops(out))
    assert {la.name: la.bias is not None for la in layers} == {"fc1": False, "fc2": True}


def test_folded_weights_compute_what_the_subgraphs_did(tmp_path: Path) -> None:
    _, err = compile_and_compare(_computed_weights(), tmp_path)
    assert err <= 1e-5


def test_a_weight_computed_from_a_graph_input_is_not_a_constant() -> None:
    """Scaled by an input at run time: not foldable; the layer is not a constant-weight layer and nothing breaks."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Mul", ["w", "s"], ["ws"]),
        helper.make_node("MatMul", ["x", "ws"], ["y"], name="fc"),
    ]
    m = model(nodes, {"w": weight(rng, 8, 12).T.copy()}, {"x": ["batch", 12], "s": [1]}, {"y": ["batch", 8]})
    out, layers = stage(m, "rewrite")
    assert layers == [] and ops(out) == ["Mul", "MatMul"]


def test_a_folded_value_serves_its_other_readers_too(tmp_path: Path) -> None:
    """A Cast whose output feeds a weight and, through Identity, a graph output: both read the folded constant."""
    rng = np.random.default_rng(2)
    w16 = np.ascontiguousarray(weight(rng, 8, 12, density=0.3).T).astype(np.float16)
    nodes = [
        helper.make_node("Constant", [], ["w16"], value=numpy_helper.from_array(w16)),
        helper.make_node("Cast", ["w16"], ["w32"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["x", "w32"], ["y"], name="fc"),
        helper.make_node("Identity", ["w32"], ["w_out"]),
    ]
    m = model(nodes, {}, {"x": ["batch", 12]}, {"y": ["batch", 8], "w_out": [12, 8]})
    out, layers = stage(m, "rewrite")
    assert [la.format for la in layers] == ["csr"]
    assert ops(out) == ["EPContext", "Identity"]
    _, err = compile_and_compare(m, tmp_path)
    assert err <= 1e-5
