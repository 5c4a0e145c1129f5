"""MatMulInteger layers (onnxruntime.quantization's dynamic mode) compile sparse on the float32 kernels, exactly:
the compiled layer equals MatMulInteger's int32 sums bit for bit (passes/integer.py), on x86, arm (qemu) and wasm
(node); a weight whose sums could leave float32's exact integers stays on ORT; the manifest says weight_dtype."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sparsec.compiler import compile_model
from sparsec.node import sparse_protos
from sparsec.options import CompileOptions
from tests.targets.arm_models import needs_qemu
from tests.targets.wasm_helpers import needs_wasm

K, N = 96, 80


def integer_model(dtype: type = np.int8, density: float = 0.1, heads: int = 1, seed: int = 0) -> onnx.ModelProto:
    """x -> DynamicQuantizeLinear -> ``heads`` MatMulInteger (sparse constant weights, as quantize_dynamic writes
    them: Cast, Mul by a_scale * w_scale) -> summed float output; uint8 weights get zero point 128."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"])]
    inits = []
    outs = []
    for h in range(heads):
        zp = 128 if dtype is np.uint8 else 0
        w = rng.integers(-127, 128, (K, N))
        w[rng.random((K, N)) >= density] = 0
        inits += [
            numpy_helper.from_array((w + zp).astype(dtype), f"w{h}"),
            numpy_helper.from_array(np.array(zp, dtype), f"wz{h}"),
            numpy_helper.from_array(np.array(0.01 * (h + 1), np.float32), f"ws{h}"),
        ]
        nodes += [
            helper.make_node("MatMulInteger", ["xq", f"w{h}", "xz", f"wz{h}"], [f"acc{h}"]),
            helper.make_node("Cast", [f"acc{h}"], [f"accf{h}"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["xs", f"ws{h}"], [f"s{h}"]),
            helper.make_node("Mul", [f"accf{h}", f"s{h}"], [f"y{h}"]),
        ]
        outs.append(f"y{h}")
    nodes.append(helper.make_node("Sum", outs, ["y"]) if heads > 1 else helper.make_node("Identity", outs, ["y"]))
    graph = helper.make_graph(
        nodes,
        "integer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 7, K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 7, N])],
        inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _save(tmp_path: Path, model: onnx.ModelProto, name: str = "int.onnx") -> Path:
    p = tmp_path / name
    onnx.save(model, str(p))
    return p


def _feeds(seed: int, batch: int = 3) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((batch, 7, K)).astype(np.float32) * 3}


def _exact(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """numpy: the model's meaning with int64 (exact) MatMulInteger sums and ORT's own DynamicQuantizeLinear."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(n, t, None) for n, t in (("xq", 2), ("xs", 1), ("xz", 2)))
    xq, xs, xz = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        ["xq", "xs", "xz"], feeds
    )
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    acc = (xq.astype(np.int64) - int(xz)) @ (inits["w0"].astype(np.int64) - int(inits["wz0"]))
    return acc.astype(np.float32) * (xs * inits["ws0"])


def test_matmulinteger_becomes_a_sparse_node_with_its_activation_converted_once(tmp_path: Path) -> None:
    res = compile_model(_save(tmp_path, integer_model(heads=3)), tmp_path / "a.sparsec", CompileOptions(format="csr"))
    assert [la["format"] for la in res.layers] == ["csr"] * 3
    assert {la["op"] for la in res.layers} == {"MatMulInteger"} and {la["weight_dtype"] for la in res.layers} == {
        "int8"
    }
    m = onnx.load(str(res.artifact / "model.onnx"))
    ops = [n.op_type for n in m.graph.node]
    assert "MatMulInteger" not in ops and ops.count("DequantizeLinear") == 1  # three layers share one conversion
    assert "Cast" not in ops  # the consumers' Cast to float32 read the kernels' outputs directly
    assert len(sparse_protos(m)) == 3 and max(res.errors.values()) == 0.0
    manifest = json.loads((res.artifact / "manifest.json").read_text())
    assert [la["weight_dtype"] for la in manifest["layers"]] == ["int8"] * 3


def test_u8u8_layers_equal_ort_int8_bit_for_bit(tmp_path: Path) -> None:
    """ORT's u8u8 MatMulInteger is exact on every CPU: the compiled model gives the very same bytes."""
    from sparsec.runtime import InferenceSession

    model = integer_model(np.uint8, heads=2)
    res = compile_model(_save(tmp_path, model), tmp_path / "u.sparsec", CompileOptions(format="csr"))
    assert {la["weight_dtype"] for la in res.layers} == {"uint8"} and res.errors == {"y": 0.0}
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    sess = InferenceSession(res.artifact)
    for seed in (11, 12):
        feeds = _feeds(seed)
        np.testing.assert_array_equal(sess.run(None, feeds)[0], ref.run(None, feeds)[0])


@pytest.mark.parametrize("fmt", ["csr", "bsr:4x1", "bsr:1x4"])
def test_u8s8_layer_equals_the_exact_int32_sums(tmp_path: Path, fmt: str) -> None:
    """Against int64 numpy (ORT's own u8s8 kernel saturates on CPUs without VNNI, so it is not the yardstick)."""
    from sparsec.runtime import InferenceSession

    model = integer_model(np.int8, density=0.3)
    res = compile_model(_save(tmp_path, model), tmp_path / "s.sparsec", CompileOptions(format=fmt, dims={"batch": 2}))
    assert res.layers[0]["format"] != "dense" and res.errors == {"y": 0.0}
    sess = InferenceSession(res.artifact)
    for seed, batch in ((21, 1), (22, 2), (23, 5)):
        feeds = _feeds(seed, batch)
        np.testing.assert_array_equal(sess.run(None, feeds)[0], _exact(model, feeds))


def test_exact_reference_matches_numpy_and_ort_u8u8() -> None:
    from sparsec.integer_reference import exact_reference

    model = integer_model(np.int8)
    ref = exact_reference(model, {"w0": "layer"})
    assert "MatMulInteger" not in {n.op_type for n in ref.graph.node}
    feeds = _feeds(5)
    got = ort.InferenceSession(ref.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_array_equal(got, _exact(model, feeds))
    assert exact_reference(model, {}) is model


def test_weight_whose_sums_leave_float32_exact_integers_stays_on_ort(tmp_path: Path) -> None:
    from sparsec.inspect import inspect_model

    big = integer_model(np.int8, density=1.0)
    w = numpy_helper.to_array(big.graph.initializer[0]).copy()
    w[:, 0] = 127  # column 0: 96 * 127 * 255 = 3.1e6 < 2**24: still exact ...
    big.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.tile(w, (8, 1)), "w0"))  # ... K = 768: 2.5e7
    big.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 8 * K
    rec = inspect_model(_save(tmp_path, big))["weights"][0]
    assert rec["format"] == "dense" and "beyond float32's exact integers" in rec["reason"], rec["reason"]
    assert rec["weight_dtype"] == "int8"


def test_qdq_weights_report_their_stored_type(tmp_path: Path) -> None:
    from models.synthetic import transformer_ffn
    from sparsec.prune_cli import prune_file
    from sparsec.quantize import quantize_file

    src = tmp_path / "ffn.onnx"
    onnx.save(transformer_ffn(density=1.0), str(src))
    prune_file(src, "unstructured:0.9", tmp_path / "p.onnx")
    quantize_file(tmp_path / "p.onnx", tmp_path / "q.onnx", mode="qdq")
    res = compile_model(tmp_path / "q.onnx", tmp_path / "q.sparsec", CompileOptions(format="csr"))
    assert [la["weight_dtype"] for la in res.layers] == ["int8"] * 3
    dense = compile_model(src, tmp_path / "f.sparsec", CompileOptions(format="csr", verify=False))
    assert {la["weight_dtype"] for la in dense.layers} == {"float32"}


def test_dynamic_quantized_ffn_compiles_sparse_with_no_flags(tmp_path: Path) -> None:
    """The whole user path: prune, ``sparsec quantize --mode dynamic``, compile with no flags, verified."""
    from models.synthetic import transformer_ffn
    from sparsec.prune_cli import prune_file
    from sparsec.quantize import quantize_file

    src = tmp_path / "ffn.onnx"
    onnx.save(transformer_ffn(d=384, hidden=1536, density=1.0), str(src))
    prune_file(src, "unstructured:0.9", tmp_path / "p.onnx")
    quantize_file(tmp_path / "p.onnx", tmp_path / "d.onnx", mode="dynamic")
    res = compile_model(tmp_path / "d.onnx", tmp_path / "d.sparsec", CompileOptions())
    integer = [la for la in res.layers if la["op"] == "MatMulInteger"]
    assert len(integer) == 2 and all(la["format"] != "dense" for la in integer), res.layers
    assert max(res.errors.values()) <= 1e-6


@pytest.mark.parametrize("target", [pytest.param("wasm", marks=needs_wasm), pytest.param("arm", marks=needs_qemu)])
def test_integer_layers_on_other_cpu_targets(tmp_path: Path, target: str) -> None:
    from sparsec.targets.registry import get_target

    model = integer_model(np.uint8, heads=2)
    res = compile_model(
        _save(tmp_path, model), tmp_path / f"{target}.sparsec", CompileOptions(target=target, format="csr")
    )
    assert [la["format"] for la in res.layers] == ["csr"] * 2 and res.errors == {"y": 0.0}
    feeds = _feeds(31, 2)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_array_equal(get_target(target).run_artifact(res.artifact, feeds)[0], ref)


def test_prune_a_dynamic_int8_model_zeroes_weights_to_their_zero_point(tmp_path: Path) -> None:
    """Quantize first, prune after: the int8/uint8 weights are ranked less their zero point and pruned to it."""
    from sparsec.prune import parse_pattern, prune_model

    model = integer_model(np.uint8, density=1.0, heads=2)
    pruned, stats = prune_model(model, parse_pattern("unstructured:0.9"))
    assert [s["op"] for s in stats] == ["MatMulInteger"] * 2
    assert all(abs(s["density_after"] - 0.1) < 0.01 for s in stats)
    inits = {t.name: numpy_helper.to_array(t) for t in pruned.graph.initializer}
    for h in range(2):
        w, before = inits[f"w{h}"].astype(np.int64) - 128, numpy_helper.to_array(model.graph.initializer[3 * h])
        kept = w != 0
        assert abs(kept.mean() - 0.1) < 0.01 and inits[f"w{h}"].dtype == np.uint8
        assert np.array_equal(inits[f"w{h}"][kept], before[kept])  # kept values untouched
        assert np.abs(w[kept]).min() >= np.abs(before.astype(np.int64) - 128)[~kept].max()  # largest |B - zp| kept
    p = _save(tmp_path, pruned)
    res = compile_model(p, tmp_path / "p.sparsec", CompileOptions(format="csr"))
    assert [la["format"] for la in res.layers] == ["csr"] * 2 and res.errors == {"y": 0.0}


def test_reference_folds_the_dequantized_weights_of_sparse_qdq_layers(tmp_path: Path) -> None:
    """QDQ: the reference runs the sparse layers on their float32 weights (as compiled), not ORT's fused int8 kernel
    (which saturates without VNNI); everything else stays as written."""
    from models.synthetic import transformer_ffn
    from sparsec.integer_reference import fold_dequantized
    from sparsec.prune_cli import prune_file
    from sparsec.quantize import quantize_file

    src = tmp_path / "ffn.onnx"
    onnx.save(transformer_ffn(density=1.0), str(src))
    prune_file(src, "unstructured:0.9", tmp_path / "p.onnx")
    quantize_file(tmp_path / "p.onnx", tmp_path / "q.onnx", mode="qdq")
    q = onnx.load(str(tmp_path / "q.onnx"))
    weights = [n.input[1] for n in q.graph.node if n.op_type in ("MatMul", "Gemm")]
    ref = fold_dequantized(q, weights)
    assert set(weights) <= {t.name for t in ref.graph.initializer}
    dq = [n for n in q.graph.node if n.op_type == "DequantizeLinear"]
    assert len([n for n in ref.graph.node if n.op_type == "DequantizeLinear"]) == len(dq) - len(weights)
    assert fold_dequantized(q, []) is q
    feeds = {"x": np.random.default_rng(3).standard_normal((2, 3, 48)).astype(np.float32)}
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph's float meaning
    want = ort.InferenceSession(q.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    got = ort.InferenceSession(ref.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())
