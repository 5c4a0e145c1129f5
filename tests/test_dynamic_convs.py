"""Sparse convs whose height and width are symbolic (issue 15): the kernels read the spatial size at run time, so a
detector-style model compiles with no flags and one artifact runs at every size, on x86, arm (qemu) and wasm (node).
Numbers are compared with ORT on the original model at sizes that hit every run-time tile case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sparsec.compiler import compile_model
from sparsec.inspect import inspect_model
from sparsec.node import decode, sparse_protos
from sparsec.options import CompileOptions
from tests.targets.arm_models import needs_qemu
from tests.targets.wasm_helpers import needs_wasm

SIZES = ((1, 1, 1), (1, 3, 5), (2, 17, 9), (1, 40, 36), (3, 33, 31))  # (batch, height, width)


def dynamic_cnn(stride_same: bool = False) -> onnx.ModelProto:
    """x[batch, 8, height, width]: 3x3 pad 1 + bias + Relu, 1x1 with a residual, 3x3 stride 2, 3x3 SAME_UPPER
    (stride 1: pads do not depend on the size), Sigmoid, 1x1; weights at 20% density. ``stride_same`` makes the
    SAME conv strided (its pads then depend on the size)."""
    rng = np.random.default_rng(0)

    def w(*shape: int, density: float = 0.2) -> np.ndarray:
        a = rng.standard_normal(shape).astype(np.float32)
        a[rng.random(shape) > density] = 0
        return a

    inits = {
        "w1": w(16, 8, 3, 3),
        "b1": w(16, density=1.0),
        "w2": w(16, 16, 1, 1),
        "w3": w(24, 16, 3, 3),
        "w4": w(24, 24, 3, 3),
        "w5": w(24, 24, 1, 1),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="c1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="c2"),
        helper.make_node("Add", ["c2", "r1"], ["a2"]),
        helper.make_node("Conv", ["a2", "w3"], ["c3"], name="c3", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node(
            "Conv", ["c3", "w4"], ["c4"], name="c4", auto_pad="SAME_UPPER", strides=[2, 2] if stride_same else [1, 1]
        ),
        helper.make_node("Sigmoid", ["c4"], ["s4"]),
        helper.make_node("Conv", ["s4", "w5"], ["y"], name="c5"),
    ]
    graph = helper.make_graph(
        nodes,
        "dynamic_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8, "height", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 24, None, None])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8  # onnxruntime-web reads IR <= 13
    return m


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("dyn") / "dyn.onnx"
    onnx.save(dynamic_cnn(), str(p))
    return p


def _compare_at_sizes(run: object, model_path: Path, sizes: tuple[tuple[int, int, int], ...] = SIZES) -> None:
    ref = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    for i, (b, h, w) in enumerate(sizes):
        x = np.random.default_rng(i).standard_normal((b, 8, h, w)).astype(np.float32)
        want = ref.run(None, {"x": x})[0]
        got = run({"x": x})[0]  # type: ignore[operator]
        assert got.shape == want.shape, (h, w)
        err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-3)
        assert err < 1e-4, f"{b}x{h}x{w}: max rel error {err:.2e}"


def test_symbolic_height_width_convs_compile_sparse_and_run_at_every_size(model_path: Path, tmp_path: Path) -> None:
    from sparsec.runtime import InferenceSession

    said: list[str] = []
    res = compile_model(model_path, tmp_path / "dyn.sparsec", CompileOptions(format="csr"), progress=said.append)
    assert [la["format"] for la in res.layers] == ["csr"] * 5 and res.checked == "5/5 sparse layers checked"
    assert any("5 convs have a symbolic height/width" in s for s in said)
    rewritten = onnx.load(str(res.artifact / "model.onnx"))
    contexts = [
        next(a.s.decode() for a in n.attribute if a.name == "ep_cache_context") for n in sparse_protos(rewritten)
    ]
    assert all(";H=0;W=0;" in c for c in contexts) and all(decode(c).conv.dynamic for c in contexts)  # type: ignore[union-attr]
    sess = InferenceSession(res.artifact)
    _compare_at_sizes(lambda feeds: sess.run(None, feeds), model_path)


def test_dim_ranks_the_kernels_at_the_given_size(model_path: Path) -> None:
    assumed = {r["name"]: r["rows"] for r in inspect_model(model_path)["weights"]}
    sized = {
        r["name"]: r["rows"] for r in inspect_model(model_path, dims={"batch": 2, "height": 64, "width": 48})["weights"]
    }
    assert assumed == {"c1": 1024, "c2": 1024, "c3": 256, "c4": 1024, "c5": 1024}  # 32x32 assumed per conv
    assert sized == {"c1": 2 * 64 * 48, "c2": 2 * 64 * 48, "c3": 2 * 32 * 24, "c4": 2 * 32 * 24, "c5": 2 * 32 * 24}


def test_strided_same_padding_with_symbolic_size_stays_dense_saying_why(tmp_path: Path) -> None:
    p = tmp_path / "same.onnx"
    onnx.save(dynamic_cnn(stride_same=True), str(p))
    c4 = next(r for r in inspect_model(p)["weights"] if r["name"] == "c4")
    assert c4["format"] == "dense" and "auto_pad SAME with a stride and a symbolic spatial size" in c4["reason"]


@pytest.mark.parametrize("target", [pytest.param("wasm", marks=needs_wasm), pytest.param("arm", marks=needs_qemu)])
def test_symbolic_size_convs_on_other_cpu_targets(model_path: Path, tmp_path: Path, target: str) -> None:
    from sparsec.targets.registry import get_target

    res = compile_model(model_path, tmp_path / f"{target}.sparsec", CompileOptions(target=target, format="csr"))
    assert [la["format"] for la in res.layers] == ["csr"] * 5 and max(res.errors.values()) <= 1e-4
    runner = get_target(target)
    _compare_at_sizes(lambda feeds: runner.run_artifact(res.artifact, feeds), model_path, SIZES[1:3])
