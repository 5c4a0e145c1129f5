"""QDQ MatMuls on the int8:1x4 kernels (passes/qdq_layers.py): the integers behind ``MatMul(DequantizeLinear(q),
DequantizeLinear(W_int8))`` run exactly, times ``x_scale * w_scale`` in the epilogue (structure); outputs as ORT's
float product's but for rare one-step flips of the quantizer after it (numeric). An int8 q made by a QuantizeLinear
is quantized again to uint8 in one node; an int8 q from elsewhere is shifted in two; a uint8 one is read as is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.passes.graphs import K, N

RNG = np.random.default_rng(5)
W_INT8 = np.where(RNG.random((K, N)) < 0.25, RNG.integers(-127, 128, (K, N)), 0).astype(np.int8)  # MatMul's B
W_SCALE = (RNG.random(N) * 0.02 + 0.005).astype(np.float32)


def qdq_matmul(activation: str) -> onnx.ModelProto:
    """x -> [Q ->] DQ -> MatMul(DQ(W int8, per-column scale)) -> Q/DQ -> y; ``activation``: "int8" or "uint8" (a Q
    of the float input x), or "int8_input" (x is an int8 graph input)."""
    zx = np.array(
        3 if activation == "int8" else 130 if activation == "uint8" else -5,
        np.uint8 if activation == "uint8" else np.int8,
    )
    inits = {
        "sx": np.array(0.05, np.float32), "zx": zx, "w": W_INT8, "ws": W_SCALE,
        "sy": np.array(0.11, np.float32), "zy": np.array(-7, np.int8),
    }  # fmt: skip
    nodes = [] if activation == "int8_input" else [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["q"])]
    nodes += [
        helper.make_node("DequantizeLinear", ["x" if activation == "int8_input" else "q", "sx", "zx"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "ws"], ["wd"], axis=1),
        helper.make_node("MatMul", ["xd", "wd"], ["mm"], name="fc"),
        helper.make_node("QuantizeLinear", ["mm", "sy", "zy"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["y"]),
    ]
    x_type = TensorProto.INT8 if activation == "int8_input" else TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "qdq_matmul",
        [helper.make_tensor_value_info("x", x_type, ["batch", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", N])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return onnx.shape_inference.infer_shapes(m)


@pytest.mark.parametrize("activation", ["int8", "uint8", "int8_input"])
def test_qdq_matmul_runs_on_the_int8_kernel(activation: str, tmp_path: Path) -> None:
    import onnxruntime as ort

    from sparsec.compiler import compile_model
    from sparsec.node import read_proto, sparse_protos
    from sparsec.options import CompileOptions
    from sparsec.runtime import InferenceSession
    from sparsec.verify_layers import FLIP_SHARE, quantized_error

    src = tmp_path / "q.onnx"
    onnx.save(qdq_matmul(activation), str(src))
    res = compile_model(src, tmp_path / "q.sparsec", CompileOptions(format="int8:1x4"))
    assert [la["format"] for la in res.layers] == ["int8:1x4"] and res.checked.startswith("1/1 sparse layers checked")
    rewritten = onnx.load(str(res.artifact / "model.onnx"))
    (node,) = sparse_protos(rewritten)
    kernel = read_proto(node)
    assert kernel.epilogue.scale == N and [q.after for q in kernel.epilogue.quant] == ["product"]
    made = {o: n for n in rewritten.graph.node for o in n.output}
    inits = {t.name: numpy_helper.to_array(t) for t in rewritten.graph.initializer}
    x_node = made.get(node.input[0])
    zp = inits[node.input[-2]]  # X's zero point, then the scale (docs/internals.md)
    np.testing.assert_array_equal(inits[node.input[-1]], np.float32(0.05) * W_SCALE)
    if activation == "int8":  # requantized from the float input: one QuantizeLinear to uint8, zero point + 128
        assert x_node is not None and x_node.op_type == "QuantizeLinear" and list(x_node.input)[0] == "x"
        assert zp.dtype == np.uint8 and int(zp) == 3 + 128
    elif activation == "uint8":  # the model's own uint8 q, as is
        assert node.input[0] == "q" and int(zp) == 130
    else:  # an int8 graph input: shifted by DequantizeLinear(x, 1, -128) -> QuantizeLinear(., 1, 0)
        assert x_node is not None and x_node.op_type == "QuantizeLinear" and int(zp) == -5 + 128
        assert made[x_node.input[0]].op_type == "DequantizeLinear"
    ref, got = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]), InferenceSession(res.artifact)
    rng = np.random.default_rng(1)
    for batch in (1, 3, 64):
        if activation == "int8_input":
            x = rng.integers(-128, 128, (batch, K)).astype(np.int8)
        else:
            x = (rng.standard_normal((batch, K)) * 4).astype(np.float32)  # both quantizers saturate somewhere
        (r,), (g,) = ref.run(None, {"x": x}), got.run(None, {"x": x})
        err, flips = quantized_error(g, r, (0.11,))
        assert err == 0.0 and flips <= max(1, FLIP_SHARE * r.size), (err, flips)


def test_qdq_layers_know_their_integers_and_sharing() -> None:
    from tests.passes.graphs import stage

    m = qdq_matmul("int8")
    _, layers = stage(m, "select", fmt="int8:1x4")
    (fc,) = layers
    assert fc.qdq is not None and fc.qdq.signed and fc.qdq.shift_passes == 1 and fc.qdq.sharing == 1
    np.testing.assert_array_equal(fc.qdq.w_int, W_INT8.T.astype(np.float32))
    _, layers = stage(qdq_matmul("int8_input"), "select", fmt="int8:1x4")
    assert layers[0].qdq is not None and layers[0].qdq.shift_passes == 2
