"""sparsec prune on weights as quantizers and exporters store them: behind DequantizeLinear (int8 per channel, uint8
per tensor), Cast (float16), Identity / Transpose of a Constant node, and onnxruntime.quantization's QDQ output;
ranked as the layer sees the weight, zeroed in the stored tensor, compiled sparse and verified."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.synthetic import transformer_ffn
from sparsec.errors import SparsecError
from sparsec.prune import parse_pattern, prune_model
from sparsec.prune_cli import prune_file
from tests.prune_helpers import check_nm, initializers, rand


def chain_model() -> onnx.ModelProto:
    """Weights as quantizers and exporters store them: int8 per-channel behind DequantizeLinear (axis 1 of B[K, N]),
    uint8 per-tensor behind DequantizeLinear then Transpose (Gemm transB=0 on the transposed value), float16 behind
    Cast, and Identity -> Transpose of a Constant node."""
    rng = np.random.default_rng(3)
    q1 = rng.integers(-127, 128, (24, 32), dtype=np.int8)  # MatMul B[K=24, N=32], scales per N
    q2 = rng.integers(0, 256, (16, 32), dtype=np.uint8)  # DQ -> Transpose -> Gemm transB=0: B = q2.T [32, 16]
    h3 = rng.standard_normal((16, 20)).astype(np.float16)  # Cast -> MatMul B[K=16, N=20]
    c4 = rand(12, 20, seed=4)  # Constant -> Identity -> Transpose -> MatMul: B = c4.T [20, 12]
    inits = [
        numpy_helper.from_array(q1, "q1"),
        numpy_helper.from_array((rng.random(32) * 0.01 + 0.001).astype(np.float32), "s1"),
        numpy_helper.from_array(rng.integers(-3, 4, 32, dtype=np.int8), "z1"),
        numpy_helper.from_array(q2, "q2"),
        numpy_helper.from_array(np.array(0.02, np.float32), "s2"),
        numpy_helper.from_array(np.array(128, np.uint8), "z2"),
        numpy_helper.from_array(h3, "h3"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["q1", "s1", "z1"], ["w1"], axis=1),
        helper.make_node("MatMul", ["x", "w1"], ["a"], name="fc1"),
        helper.make_node("DequantizeLinear", ["q2", "s2", "z2"], ["w2q"]),
        helper.make_node("Transpose", ["w2q"], ["w2"], perm=[1, 0]),
        helper.make_node("Gemm", ["a", "w2"], ["b"], name="fc2"),
        helper.make_node("Cast", ["h3"], ["w3"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["b", "w3"], ["c"], name="fc3"),
        helper.make_node("Constant", [], ["c4"], value=numpy_helper.from_array(c4)),
        helper.make_node("Identity", ["c4"], ["c4i"]),
        helper.make_node("Transpose", ["c4i"], ["w4"]),
        helper.make_node("MatMul", ["c", "w4"], ["y"], name="fc4"),
    ]
    graph = helper.make_graph(
        nodes,
        "chains",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 24])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 12])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_weights_behind_dequantize_cast_transpose_are_pruned_as_the_layer_sees_them(tmp_path: Path) -> None:
    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions

    m = chain_model()
    before = initializers(m)
    out, stats = prune_model(m, parse_pattern("nm:2:4"))
    assert [(st["name"], st["op"], st["shape"]) for st in stats] == [
        ("q1", "MatMul", [24, 32]),
        ("q2", "Gemm", [16, 32]),
        ("h3", "MatMul", [16, 20]),
        ("c4", "MatMul", [12, 20]),
    ]
    after = initializers(out)
    assert {k: v.dtype for k, v in after.items()} == {k: v.dtype for k, v in before.items()}  # stored types kept
    # int8 per-channel: the dequantized weight W = B.T has 2 of every 4 along K; pruned values sit at the zero point
    z1, s1 = before["z1"].astype(np.int64), before["s1"]
    w1 = ((after["q1"].astype(np.int64) - z1) * s1).T
    assert (np.count_nonzero(w1.reshape(32, 6, 4), axis=2) <= 2).all()
    assert ((after["q1"] == before["q1"]) | (after["q1"] == before["z1"][None, :])).all()
    check_nm(((before["q1"].astype(np.int64) - z1) * s1).T, w1, 2, 4)
    # uint8 per-tensor then Transpose into Gemm transB=0: W = (B).T = q2 dequantized, groups along q2's rows
    w2 = (after["q2"].astype(np.int64) - 128) * 0.02
    check_nm((before["q2"].astype(np.int64) - 128) * 0.02, w2, 2, 4)
    assert set(np.unique(after["q2"][w2 == 0])) <= {128}
    check_nm(before["h3"].astype(np.float32).T, after["h3"].astype(np.float32).T, 2, 4)  # float16 behind Cast
    c4 = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in out.graph.node if n.op_type == "Constant"}
    check_nm(rand(12, 20, seed=4), c4["c4"], 2, 4)  # Identity -> Transpose: W = c4
    assert all(st["density_after"] <= 0.5 + 1e-9 for st in stats)
    src = tmp_path / "chains.onnx"
    onnx.save(out, str(src))
    res = compile_model(src, tmp_path / "chains.sparsec", CompileOptions(format="csr", verify=True))
    assert [la["format"] for la in res.layers] == ["csr"] * 4 and max(res.errors.values()) <= 1e-4


def test_model_quantized_by_onnxruntime_qdq_prunes_and_compiles_sparse(tmp_path: Path) -> None:
    """onnxruntime.quantization's static QDQ output (per-channel int8 weights behind DequantizeLinear, opset 17):
    prune zeroes the int8 weights (to their zero points), compile folds them to float32 and makes every layer sparse,
    verified per layer against ORT on the quantized model."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions

    src = tmp_path / "ffn.onnx"
    onnx.save(transformer_ffn(density=1.0), str(src))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{"x": rand(2, 4, 48, seed=i)} for i in range(4)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    qdq = tmp_path / "ffn_qdq.onnx"
    quantize_static(src, qdq, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8)
    pruned = tmp_path / "ffn_qdq90.onnx"
    assert prune_file(qdq, "unstructured:0.9", pruned).startswith("pruned 3 weights (unstructured:0.9)")
    weights = [
        t for t in onnx.load(str(pruned)).graph.initializer if t.data_type == TensorProto.INT8 and len(t.dims) == 2
    ]
    assert weights and all(np.count_nonzero(numpy_helper.to_array(t)) <= 0.11 * np.prod(t.dims) for t in weights)
    res = compile_model(pruned, tmp_path / "q.sparsec", CompileOptions(format="csr", verify=True))
    assert [la["format"] != "dense" for la in res.layers] == [True] * 3 and max(res.errors.values()) <= 1e-4
    # activations quantized too: the reference keeps ORT's default level (weight-only DQ would run it at basic)
    from sparsec.verify import weight_only_dequantized

    assert not weight_only_dequantized(onnx.load(str(pruned))) and weight_only_dequantized(chain_model())


def test_chains_that_do_not_end_in_float32_or_are_computed_are_left_alone() -> None:
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("Cast", ["w16"], ["w16c"], to=TensorProto.FLOAT16),  # float16 weight: not compiled
        helper.make_node("MatMul", ["x16", "w16c"], ["y16"]),
        helper.make_node("Cast", ["i32"], ["wi"], to=f),  # an integer cast to float: not a quantized weight
        helper.make_node("MatMul", ["x", "wi"], ["yi"]),
        helper.make_node("Neg", ["wn"], ["wneg"]),  # computed by other ops
        helper.make_node("MatMul", ["x", "wneg"], ["yn"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x16", TensorProto.FLOAT16, [2, 4]),
            helper.make_tensor_value_info("x", f, [2, 4]),
        ],
        [helper.make_tensor_value_info(n, t, [2, 4]) for n, t in (("y16", TensorProto.FLOAT16), ("yi", f), ("yn", f))],
        initializer=[
            numpy_helper.from_array(np.ones((4, 4), np.float32), "w16"),
            numpy_helper.from_array(np.ones((4, 4), np.int32), "i32"),
            numpy_helper.from_array(np.ones((4, 4), np.float32), "wn"),
        ],
    )
    with pytest.raises(SparsecError, match=r"^no MatMul/Gemm/Conv weight to prune in toy\.onnx"):
        prune_model(helper.make_model(graph), parse_pattern("nm:2:4"), label="toy.onnx")
