"""Small graphs for pass tests, built with onnx.helper (symbolic batch, odd sizes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sparsec.layer import Layer

K, N = 37, 29


def weight(rng: np.random.Generator, n: int = N, k: int = K, density: float = 0.2) -> np.ndarray:
    """W[n, k] with about ``density`` nonzeros."""
    w = rng.standard_normal((n, k)).astype(np.float32)
    return w * (rng.random((n, k)) < density)


def const(name: str, value: np.ndarray | float) -> onnx.NodeProto:
    """A Constant node (PyTorch exports scalars this way)."""
    arr = np.asarray(value, np.float32)
    return helper.make_node("Constant", [], [name], name=f"const_{name}", value=numpy_helper.from_array(arr))


def model(
    nodes: list[onnx.NodeProto],
    inits: dict[str, np.ndarray],
    inputs: dict[str, list[int | str]],
    outputs: dict[str, list[int | str]],
    opset: int = 17,
) -> onnx.ModelProto:
    """A checked, shape-inferred float32 model."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return onnx.shape_inference.infer_shapes(m, strict_mode=True)


def matmul_model(w: np.ndarray, tail: list[onnx.NodeProto] | None = None, out: str = "y") -> onnx.ModelProto:
    """x[batch, K] @ W^T (MatMul with B = W.T), optionally followed by ``tail`` nodes producing ``out``."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm" if tail else out], name="fc")] + (tail or [])
    shape: list[int | str] = ["batch", w.shape[0]]
    return model(nodes, {"w": np.ascontiguousarray(w.T)}, {"x": ["batch", w.shape[1]]}, {out: shape})


def stage(m: onnx.ModelProto, until: str, fmt: str = "csr", target: str = "x86") -> tuple[onnx.ModelProto, list[Layer]]:
    """``m`` after the compile stages up to ``until`` (``--format fmt``), and the layer records."""
    from sparsec.options import CompileOptions
    from sparsec.pipeline import compile_graph
    from sparsec.targets.registry import get_target

    return compile_graph(m, get_target(target), CompileOptions(format=fmt, verify=False), until=until)


def with_formats(
    m: onnx.ModelProto, formats: dict[str, str], passes: tuple[str, ...] = ("rewrite",), target: str = "x86"
) -> tuple[onnx.ModelProto, dict[str, Layer]]:
    """``m`` after ``select`` with each layer's format set by ``formats`` (dense when not named), then ``passes``
    (of rewrite, fuse, partition, in that order), and the layer records by name."""
    from dataclasses import replace

    import onnx_ir as ir

    from sparsec.layer import Choice
    from sparsec.options import CompileOptions
    from sparsec.passes.fuse import FusePass
    from sparsec.passes.graph import to_proto
    from sparsec.passes.partition import PartitionPass
    from sparsec.passes.rewrite import RewritePass
    from sparsec.passes.select import SelectPass
    from sparsec.passes.state import Compilation
    from sparsec.targets.registry import get_target

    state = Compilation(get_target(target), CompileOptions(verify=False), source=m)
    model = ir.from_proto(m)
    SelectPass(state)(model)
    for layer in state.records():
        state.update(replace(layer, choice=Choice(formats.get(layer.name, "dense"), "set by the test")))
    made = {"rewrite": RewritePass, "fuse": FusePass, "partition": PartitionPass}
    for name in passes:
        made[name](state)(model)
    return to_proto(model, state.source), state.layers


def ops(m: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in m.graph.node]


def compile_and_compare(
    m: onnx.ModelProto, tmp: Path, fmt: str = "csr", batches: tuple[int, ...] = (1, 3, 64), seed: int = 0
) -> tuple[onnx.ModelProto, float]:
    """Compile ``m`` for x86 with ``--format fmt``, run it through the sparsec EP at each batch size on fresh random
    inputs and return (the rewritten model, the max relative error against ORT on the original)."""
    import onnxruntime as ort

    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions
    from sparsec.runtime import InferenceSession
    from sparsec.verify import relative_error

    src = tmp / "m.onnx"
    onnx.save(m, str(src))
    res = compile_model(src, tmp / "m.sparsec", CompileOptions(format=fmt, verify=False))
    ref_sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    sess = InferenceSession(res.artifact)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for b in batches:
        feeds = {}
        for vi in m.graph.input:
            dims = [d.dim_value if d.HasField("dim_value") else b for d in vi.type.tensor_type.shape.dim]
            feeds[vi.name] = rng.standard_normal(dims).astype(np.float32)
        for got, ref in zip(sess.run(None, feeds), ref_sess.run(None, feeds), strict=True):
            worst = max(worst, relative_error(got, ref))
    return onnx.load(str(res.artifact / "model.onnx")), worst
