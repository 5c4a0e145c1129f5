"""The wasm runner's quantize steps: DynamicQuantizeLinear on kernels.wasm (targets/simd/templates/quantize.py) in
place of onnxruntime-web's scalar one, for the DynamicQuantizeLinear nodes only int8 sparse steps read.

Numeric: the kernel (built for this host, and in node inside an artifact) against ORT's DynamicQuantizeLinear bit
for bit: ties of the zero point and of the values (round half to even), all zeros, one value, one sign only, tails
of 1..3 values past the vectors. Structural: which nodes become quantize steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from sparsec.compiler import compile_model
from sparsec.options import CompileOptions
from tests.targets.arm_models import dynamic_int8_layer
from tests.targets.wasm_helpers import needs_wasm

TIES = ([-0.5, 254.5], [-1.5, 253.5], [-2.5, 252.5], [0.5, 1.5, 2.5, 3.5, 254.5], [-3.5, -2.5, 251.5])


def inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    cases = [np.array(v, np.float32) for v in TIES]
    cases += [np.zeros(7, np.float32), np.array([3.0], np.float32), np.array([-7.0, -1.0], np.float32)]
    for n in (1, 2, 3, 4, 5, 127, 1000, 4099):
        for scale, shift in ((0.01, 0.0), (1.0, 0.5), (30.0, -2.0)):
            cases.append((rng.standard_normal(n) * scale + shift).astype(np.float32))
    return cases


def ort_dql() -> object:
    import onnxruntime as ort

    graph = helper.make_graph(
        [helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])],
        "dql",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n"])],
        [
            helper.make_tensor_value_info("y", onnx.TensorProto.UINT8, ["n"]),
            helper.make_tensor_value_info("s", onnx.TensorProto.FLOAT, []),
            helper.make_tensor_value_info("z", onnx.TensorProto.UINT8, []),
        ],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def test_kernel_equals_ort_dynamic_quantize_linear() -> None:
    """The PrimFunc built for this host: ORT's bytes, scale and zero point for every input."""
    import tvm

    from sparsec.targets.simd.templates.quantize import SYMBOL, dynamic_quantize

    f = tvm.compile(tvm.IRModule({SYMBOL: dynamic_quantize()}), target=tvm.target.Target({"kind": "llvm"}))[SYMBOL]
    sess = ort_dql()
    for x in inputs():
        y, s, z = sess.run(None, {"x": x})  # type: ignore[attr-defined]
        got = [tvm.runtime.tensor(np.zeros(x.size, np.uint8)), tvm.runtime.tensor(np.zeros(1, np.float32))]
        got.append(tvm.runtime.tensor(np.zeros(1, np.uint8)))
        f(tvm.runtime.tensor(x), *got)
        np.testing.assert_array_equal(got[0].numpy(), y, err_msg=str(x[:6]))
        assert got[1].numpy()[0] == s and got[2].numpy()[0] == z, (x[:6], s, z)


def identity_layer(n: int) -> onnx.ModelProto:
    """y = float(MatMulInteger(q(x), I)) * (x_scale * 1): the quantized x less its zero point, times its scale."""
    return dynamic_int8_layer(np.eye(n, dtype=np.int64), np.array(1.0))


@needs_wasm
def test_quantize_step_in_node_equals_ort(tmp_path: Path) -> None:
    """In an artifact (node): the quantize step's bytes, zero point and scale (through an identity int8 layer, whose
    output is ``(q - zero_point) * scale``) equal ORT's on the original model bit for bit."""
    import onnxruntime as ort

    from sparsec.targets.wasm.node_runner import run_in_node

    n = 8
    model = identity_layer(n)
    onnx.save(model, str(tmp_path / "m.onnx"))
    res = compile_model(tmp_path / "m.onnx", tmp_path / "m.sparsec", CompileOptions(target="wasm", format="int8:1x4"))
    plan = json.loads((res.artifact / "plan.json").read_text())
    assert [s["kind"] for s in plan["steps"]][:2] == ["quantize", "sparse"]
    assert plan["steps"][0]["scales"] == [{"output": "s", "values": [1.0], "dims": []}]
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    batches = [np.resize(np.array(t, np.float32), (2, n)) for t in TIES]
    batches += [(rng.standard_normal((m, n)) * 10).astype(np.float32) for m in (0, 1, 3, 33)]  # 0: no kernel call
    for x in batches:
        np.testing.assert_array_equal(run_in_node(res.artifact, {"x": x})[0], sess.run(None, {"x": x})[0])


def test_only_quantizers_read_by_sparse_steps_alone_become_steps(tmp_path: Path) -> None:
    """A DynamicQuantizeLinear whose scale a dense node also reads stays in its onnxruntime-web segment."""
    from sparsec.frontend import load_model
    from sparsec.pipeline import compile_graph
    from sparsec.targets.registry import get_target
    from sparsec.targets.wasm.plan import make_plan

    model = identity_layer(16)
    model.graph.node.append(helper.make_node("Identity", ["xs"], ["xs_out"]))
    model.graph.output.append(helper.make_tensor_value_info("xs_out", onnx.TensorProto.FLOAT, []))
    for m, expected in ((identity_layer(16), ["quantize", "sparse"]), (model, ["dense", "sparse"])):
        onnx.save(m, str(tmp_path / "m.onnx"))
        opts = CompileOptions(target="wasm", format="int8:1x4")
        rewritten, _ = compile_graph(load_model(tmp_path / "m.onnx"), get_target("wasm"), opts)
        assert [s["kind"] for s in make_plan(rewritten).steps][:2] == expected
