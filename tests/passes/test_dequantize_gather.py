"""constants: a Gather from a per-tensor dequantized constant table (a QDQ model's embeddings) gathers the stored
integers and dequantizes the rows it took (structure), the same bits as ORT on the model as written (numeric); a
per-row quantized table, or one something else reads dequantized, stays as it was."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from tests.passes.graphs import ops, stage

V, D, N = 50, 16, 8


def embedding_model(scale: np.ndarray, also_read: bool = False) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    inits = {
        "table": rng.integers(-128, 128, (V, D)).astype(np.int8),
        "scale": scale.astype(np.float32),
        "zp": np.full(scale.shape, 5, np.int8),
        "w": (rng.standard_normal((D, N)) * (rng.random((D, N)) < 0.2)).astype(np.float32),
    }
    nodes = [
        helper.make_node("DequantizeLinear", ["table", "scale", "zp"], ["dense_table"], name="dq_table", axis=0),
        helper.make_node("Gather", ["dense_table", "ids"], ["rows"], name="embed"),
        helper.make_node("MatMul", ["rows", "w"], ["y"], name="fc"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", N])]
    if also_read:
        nodes.append(helper.make_node("ReduceSum", ["dense_table"], ["total"], name="sum", keepdims=0))
        outputs.append(helper.make_tensor_value_info("total", TensorProto.FLOAT, []))
    graph = helper.make_graph(
        nodes,
        "embed",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "s"])],
        outputs,
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return onnx.shape_inference.infer_shapes(m)


def _run(m: onnx.ModelProto, ids: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"ids": ids})


def test_gather_reads_the_stored_integers_with_the_same_bits() -> None:
    m = embedding_model(np.array(0.0173))
    out, _ = stage(m, "constants")
    assert ops(out) == ["Gather", "DequantizeLinear", "MatMul"], ops(out)
    gather = out.graph.node[0]
    assert gather.input[0] == "table"  # the int8 table itself, not a dequantized copy
    assert out.graph.node[1].output[0] == "rows"  # the value keeps its name (per-layer taps, verification)
    ids = np.random.default_rng(0).integers(0, V, (3, 7))
    for got, ref in zip(_run(out, ids), _run(m, ids), strict=True):
        assert np.array_equal(got, ref)


def test_per_row_tables_and_shared_dequantized_tables_stay() -> None:
    per_row, _ = stage(embedding_model(np.linspace(0.01, 0.02, V)), "constants")
    assert ops(per_row) == ["DequantizeLinear", "Gather", "MatMul"]
    shared, _ = stage(embedding_model(np.array(0.0173), also_read=True), "constants")
    assert ops(shared)[:2] == ["DequantizeLinear", "Gather"]
