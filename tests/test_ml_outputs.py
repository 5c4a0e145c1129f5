"""Models with ai.onnx.ml ops and non-tensor outputs (issue 15): a classifier whose ZipMap output is a sequence of
maps, as skl2onnx writes it. x86, arm (qemu) and wasm (node) compile, verify and run it; what a target's runner
cannot pass (non-tensor inputs; on wasm, sequences other than a ZipMap's) is refused in one line up front."""

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
from sparsec.options import CompileOptions
from sparsec.verify import relative_error
from tests.passes.graphs import weight
from tests.targets.arm_models import needs_qemu
from tests.targets.wasm_helpers import needs_wasm


def classifier() -> onnx.ModelProto:
    """x[N, 16] -> MatMul (sparse) -> Softmax -> ArgMax label and ZipMap {class: probability} per row."""
    w = np.ascontiguousarray(weight(np.random.default_rng(0), 3, 16, density=0.3).T)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["logits"], name="fc"),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        helper.make_node("ArgMax", ["probs"], ["label"], axis=1, keepdims=0),
        helper.make_node(
            "ZipMap", ["probs"], ["output_probability"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2]
        ),
    ]
    seq_map = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    )
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_value_info("output_probability", seq_map),
        ],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)]
    m = helper.make_model(graph, opset_imports=opsets)
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def test_relative_error_compares_sequences_of_maps() -> None:
    ref = [{0: 0.5, 1: 0.5}, {0: 1.0, 1: 0.0}]
    assert relative_error([{0: 0.5, 1: 0.5}, {0: 1.0, 1: 0.0}], ref) == 0.0
    assert relative_error([{0: 0.5, 1: 0.5}, {0: 0.9, 1: 0.0}], ref) == pytest.approx(0.1)
    assert relative_error([{0: 0.5}, {0: 1.0, 1: 0.0}], ref) == float("inf")  # a key missing
    assert relative_error([{0: 0.5, 1: 0.5}], ref) == float("inf")  # an element missing
    assert relative_error(np.zeros(2), ref) == float("inf")


def test_classifier_with_zipmap_compiles_sparse_and_runs(tmp_path: Path) -> None:
    import onnxruntime as ort

    from sparsec.runtime import InferenceSession

    src = tmp_path / "clf.onnx"
    onnx.save(classifier(), str(src))
    res = compile_model(src, tmp_path / "clf.sparsec", CompileOptions(format="csr", verify=True))
    assert [la["format"] for la in res.layers] == ["csr"] and res.checked == "1/1 sparse layers checked"
    assert set(res.errors) == {"label", "output_probability"} and max(res.errors.values()) <= 1e-4
    manifest = json.loads((res.artifact / "manifest.json").read_text())
    assert manifest["outputs"][1] == {"name": "output_probability", "type": "seq(map(int64,tensor(float32)))"}
    out = onnx.load(str(res.artifact / "model.onnx"))
    assert out.graph.output[1].type.WhichOneof("value") == "sequence_type"  # the type survived the passes
    x = {"x": np.random.default_rng(4).standard_normal((5, 16)).astype(np.float32)}
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, x)
    got = InferenceSession(res.artifact).run(None, x)
    assert isinstance(got[1], list) and len(got[1]) == 5
    assert max(relative_error(g, r) for g, r in zip(got, ref, strict=True)) <= 1e-5


@pytest.mark.parametrize("target", [pytest.param("arm", marks=needs_qemu), pytest.param("wasm", marks=needs_wasm)])
def test_zipmap_output_passes_through_arm_and_wasm(tmp_path: Path, target: str) -> None:
    """The aarch64 host app writes the sequence of maps as JSON; the wasm runner computes the ZipMap itself
    (onnxruntime-web returns tensors only). Both read back as ORT's Python API returns it: a list of dicts."""
    import onnxruntime as ort

    from sparsec.targets.registry import get_target

    src = tmp_path / "clf.onnx"
    onnx.save(classifier(), str(src))
    res = compile_model(src, tmp_path / "clf.sparsec", CompileOptions(target=target, format="csr", verify=True))
    assert [la["format"] for la in res.layers] == ["csr"] and res.checked == "1/1 sparse layers checked"
    assert set(res.errors) == {"label", "output_probability"} and max(res.errors.values()) <= 1e-4
    x = {"x": np.random.default_rng(5).standard_normal((4, 16)).astype(np.float32)}
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, x)
    got = get_target(target).run_artifact(res.artifact, x)
    assert isinstance(got[1], list) and len(got[1]) == 4 and all(list(m) == [0, 1, 2] for m in got[1])
    assert np.array_equal(got[0], ref[0]) and relative_error(got[1], ref[1]) <= 1e-5
    assert relative_error(got[1], [{k: v + 0.01 for k, v in m.items()} for m in ref[1]]) > 1e-3  # the check bites


def _sequence_model(sequence_input: bool) -> onnx.ModelProto:
    """y = x @ W, and a sequence: built from y (SequenceConstruct) as an output, or taken as an input and read
    with SequenceAt."""
    w = np.ascontiguousarray(weight(np.random.default_rng(0), 8, 16, density=0.3).T)
    seq_t = helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, ["N", 8]))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])]
    if sequence_input:
        inputs.append(helper.make_value_info("s", seq_t))
        nodes.append(helper.make_node("SequenceAt", ["s", "zero"], ["first"]))
        outputs.append(helper.make_tensor_value_info("first", TensorProto.FLOAT, ["N", 8]))
    else:
        nodes.append(helper.make_node("SequenceConstruct", ["y", "y"], ["pair"]))
        outputs.append(helper.make_value_info("pair", seq_t))
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(0, np.int64), "zero")]
    m = helper.make_model(helper.make_graph(nodes, "seq", inputs, outputs, initializer=inits))
    m.opset_import[0].version = 17
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


@pytest.mark.parametrize(
    ("target", "sequence_input", "what"),
    [
        ("arm", True, r"input 's' \(a sequence\) is not a tensor; the aarch64 host app .* takes only tensor inputs"),
        ("wasm", True, r"input 's' \(a sequence\) is not a tensor; onnxruntime-web passes only tensors"),
        ("wasm", False, r"output 'pair' \(a sequence\) is not a tensor; onnxruntime-web passes only tensors"),
    ],
)
def test_values_a_runner_cannot_pass_are_refused_up_front(
    tmp_path: Path, target: str, sequence_input: bool, what: str
) -> None:
    src = tmp_path / "seq.onnx"
    onnx.save(_sequence_model(sequence_input), str(src))
    with pytest.raises(SparsecError, match=what) as e:
        compile_model(src, tmp_path / "seq.sparsec", CompileOptions(target=target, format="csr"))
    assert "\n" not in str(e.value) and "--target x86 runs such models" in str(e.value)
    assert not (tmp_path / "seq.sparsec").exists()


def test_run_prints_non_tensor_outputs_and_npz_refuses_them(tmp_path: Path) -> None:
    src = tmp_path / "clf.onnx"
    onnx.save(classifier(), str(src))
    compile_model(src, tmp_path / "clf.sparsec", CompileOptions(format="csr", verify=False))
    np.save(tmp_path / "x.npy", np.ones((2, 16), np.float32))
    args = ["run", str(tmp_path / "clf.sparsec"), "--input", f"x={tmp_path / 'x.npy'}"]
    ok = CliRunner().invoke(main, args)
    assert ok.exit_code == 0, ok.output
    assert "output_probability: list of 2: [{0: " in ok.output
    bad = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "o.npz")])
    assert bad.exit_code == 2 and "is not a tensor: .npz holds tensors only" in bad.output
