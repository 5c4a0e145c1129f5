"""Random small graphs for the property-based tests: chains of MatMul/Gemm layers with random shapes, sparsity
patterns (unstructured, blocks, N:M, all-zero, dense) and epilogues (bias, activation, residual)."""

from __future__ import annotations

import math

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

PATTERNS = ("unstructured", "block4x4", "block16x1", "nm2:4", "zero", "dense")
ACTS = ("none", "Relu", "Sigmoid", "Clip", "Gelu")


def pattern_weight(rng: np.random.Generator, n: int, k: int, pattern: str, density: float) -> np.ndarray:
    """W[N, K] with the given sparsity structure."""
    w = rng.standard_normal((n, k)).astype(np.float32)
    if pattern == "zero":
        return np.zeros((n, k), np.float32)
    if pattern == "dense":
        return w
    if pattern == "nm2:4":
        for g in range(0, k, 4):
            for row in range(n):
                width = min(4, k - g)
                drop = rng.permutation(width)[: max(0, width - 2)]
                w[row, g + drop] = 0.0
        return w
    if pattern.startswith("block"):
        r, c = (4, 4) if pattern == "block4x4" else (16, 1)
        keep = rng.random((math.ceil(n / r), math.ceil(k / c))) < density
        return w * np.kron(keep, np.ones((r, c), np.float32))[:n, :k]
    return w * (rng.random((n, k)) < density)


@st.composite
def layer_specs(draw: st.DrawFn) -> dict[str, object]:
    return {
        "n": draw(st.integers(1, 40)),
        "gemm": draw(st.booleans()),
        "trans_b": draw(st.booleans()),
        "alpha": draw(st.sampled_from([1.0, 0.5, -2.0])),
        "pattern": draw(st.sampled_from(PATTERNS)),
        "density": draw(st.sampled_from([0.05, 0.2, 0.5])),
        "bias": draw(st.booleans()),
        "act": draw(st.sampled_from(ACTS)),
        "residual": draw(st.booleans()),
    }


@st.composite
def graph_specs(draw: st.DrawFn) -> dict[str, object]:
    return {
        "k": draw(st.integers(1, 40)),
        "rank3": draw(st.booleans()),
        "layers": draw(st.lists(layer_specs(), min_size=1, max_size=3)),
        "seed": draw(st.integers(0, 2**31 - 1)),
        "format": draw(st.sampled_from(["auto", "csr", "bsr:4x4", "bsr:16x1", "nm:2:4"])),
    }


def _activation(name: str, x: str, out: str, nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto]) -> None:
    if name == "Clip":
        inits += [
            numpy_helper.from_array(np.float32(-0.5), f"{out}_lo"),
            numpy_helper.from_array(np.float32(0.7), f"{out}_hi"),
        ]
        nodes.append(helper.make_node("Clip", [x, f"{out}_lo", f"{out}_hi"], [out]))
    elif name == "Gelu":  # PyTorch's exported form: x * 0.5 * (1 + erf(x / sqrt(2)))
        inits += [
            numpy_helper.from_array(np.float32(v), f"{out}_{n}")
            for n, v in (("s", math.sqrt(2)), ("one", 1.0), ("half", 0.5))
        ]
        nodes += [
            helper.make_node("Div", [x, f"{out}_s"], [f"{out}_d"]),
            helper.make_node("Erf", [f"{out}_d"], [f"{out}_e"]),
            helper.make_node("Add", [f"{out}_e", f"{out}_one"], [f"{out}_a"]),
            helper.make_node("Mul", [x, f"{out}_a"], [f"{out}_m"]),
            helper.make_node("Mul", [f"{out}_m", f"{out}_half"], [out]),
        ]
    else:
        nodes.append(helper.make_node(name, [x], [out]))


def build_graph(spec: dict[str, object]) -> onnx.ModelProto:
    rng = np.random.default_rng(int(spec["seed"]))  # type: ignore[arg-type]
    k = int(spec["k"])  # type: ignore[arg-type]
    layers: list[dict[str, object]] = spec["layers"]  # type: ignore[assignment]
    rank3 = bool(spec["rank3"]) and not any(la["gemm"] for la in layers)  # Gemm takes rank-2 activations
    lead: list[int | str] = ["batch", "seq"] if rank3 else ["batch"]
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    x = "x"
    for i, la in enumerate(layers):
        n = int(la["n"])  # type: ignore[arg-type]
        w = pattern_weight(rng, n, k, str(la["pattern"]), float(la["density"]))  # type: ignore[arg-type]
        h = f"h{i}"
        if la["gemm"]:
            b = w if la["trans_b"] else w.T
            inits.append(numpy_helper.from_array(np.ascontiguousarray(b), f"w{i}"))
            ins = [x, f"w{i}"]
            if la["bias"]:
                inits.append(numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), f"c{i}"))
                ins.append(f"c{i}")
            nodes.append(helper.make_node("Gemm", ins, [h], transB=int(bool(la["trans_b"])), alpha=float(la["alpha"])))  # type: ignore[arg-type]
        else:
            inits.append(numpy_helper.from_array(np.ascontiguousarray(w.T), f"w{i}"))
            nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [h]))
            if la["bias"]:
                inits.append(numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), f"c{i}"))
                nodes.append(helper.make_node("Add", [h, f"c{i}"], [f"{h}b"]))
                h = f"{h}b"
        if la["act"] != "none":
            _activation(str(la["act"]), h, f"{h}a", nodes, inits)
            h = f"{h}a"
        if la["residual"] and n == k:
            nodes.append(helper.make_node("Add", [h, x], [f"{h}r"]))
            h = f"{h}r"
        x, k = h, n
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    g = helper.make_graph(
        nodes,
        "random",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [*lead, int(spec["k"])])],  # type: ignore[arg-type]
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [*lead, k])],
        initializer=inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
