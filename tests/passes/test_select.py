"""select: a layer goes sparse only when predicted faster than dense; forced formats; reasons are recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import helper

from sparsec.errors import SparsecError
from sparsec.layer import Layer
from sparsec.passes.analysis import find_layers as find_ir_layers
from sparsec.passes.choose import FAMILY_MARGIN, MARGIN, candidates, check_forced, choose
from sparsec.passes.cost_model import CostModel
from sparsec.targets.base import Target
from tests.passes.graphs import matmul_model, model, weight


def find_layers(m: onnx.ModelProto) -> list[Layer]:
    return find_ir_layers(ir.from_proto(m).graph)


class Kernels(Target):
    """A target whose kernels are the formats ``supports`` accepts."""

    name = "x86"

    def __init__(self, supports: Callable[[str], bool]) -> None:
        self.accepts = supports

    def supports(self, fmt: str) -> bool:
        return self.accepts(fmt)


# dense: 1 ns per MAC; csr: 4 ns per stored value; bsr: 1.5 ns; nm: 2 ns (no per-row, fixed or per-node cost).
COST = CostModel(
    "x86",
    "test",
    {
        "dense": {"128": [1.0, 0.0, 0.0]},
        "csr": {"128": [4.0, 0.0, 0.0]},
        "bsr": {"128": [1.5, 0.0, 0.0]},
        "nm": {"128": [2.0, 0.0, 0.0]},
    },
    "test",
    node_us=0.0,
)


def layer_with(w: np.ndarray):  # type: ignore[no-untyped-def]
    return find_layers(matmul_model(w))[0]


def test_stays_dense_when_sparse_is_predicted_slower() -> None:
    la = layer_with(weight(np.random.default_rng(0), density=0.5))  # csr 2x the work, bsr ~no zero blocks
    c = choose(la, "auto", ["csr", "bsr:4x4", "nm:2:4"], COST, 128)
    assert c.format == "dense" and c.reason.startswith("stays dense: predicted") and c.speedup < MARGIN


def test_picks_fastest_predicted_format() -> None:
    w = weight(np.random.default_rng(1), density=0.05)
    la = layer_with(w)
    c = choose(la, "auto", ["csr", "bsr:4x4"], COST, 128)
    # csr: 4 * nnz vs dense K*N -> speedup 1 / (4 * 0.05) = 5; bsr:4x4 stores far more values at 5% density.
    assert c.format == "csr"
    assert c.speedup == pytest.approx(w.size / (4 * np.count_nonzero(w)))
    assert "predicted 5" in c.reason or f"{c.speedup:.1f}x" in c.reason


def test_nm_only_when_the_weight_conforms() -> None:
    w = weight(np.random.default_rng(2), density=1.0)
    w.reshape(w.shape[0], -1)[:, 1::2] = 0.0  # 1:2 everywhere (K is odd: the last group is partial)
    la = layer_with(w)
    assert la.profile is not None and la.profile.nm["1:2"] == 1.0 and la.profile.nm["2:4"] == 1.0
    cheap_nm = CostModel("x86", "t", {**COST.table, "nm": {"128": [1.0, 0.0, 0.0]}}, "", node_us=0.0)
    c = choose(la, "auto", ["nm:1:2", "csr"], cheap_nm, 128)
    assert c.format == "nm:1:2"
    assert c.speedup == pytest.approx(37 / 19)  # 19 groups of 2 along K = 37, one slot each
    w[0, 0] = w[0, 1] = 1.0  # one group breaks 1:2
    c = choose(layer_with(w), "auto", ["nm:1:2"], cheap_nm, 128)
    assert c.format == "dense" and "no sparse format fits" in c.reason


def test_nm_needs_its_larger_margin() -> None:
    """An N:M format predicted between MARGIN and its own margin stays dense, and says what it needed; a format of
    another family with the same prediction would have been chosen."""
    w = weight(np.random.default_rng(2), density=1.0)
    w.reshape(w.shape[0], -1)[:, 1::2] = 0.0  # 1:2: 37 columns in 19 groups, one slot each
    speedup = 37 / 19 / 1.5  # nm at 1.5 ns per slot: 1.30x, under the nm margin
    assert MARGIN < speedup < FAMILY_MARGIN["nm"]
    nm = CostModel("x86", "t", {**COST.table, "nm": {"128": [1.5, 0.0, 0.0]}}, "", node_us=0.0)
    c = choose(layer_with(w), "auto", ["nm:1:2"], nm, 128)
    assert c.format == "dense" and c.speedup == pytest.approx(speedup), c
    assert f"needs {FAMILY_MARGIN['nm']:.1f}x" in c.reason
    cheaper = CostModel("x86", "t", {**COST.table, "nm": {"128": [1.2, 0.0, 0.0]}}, "", node_us=0.0)  # 1.62x: over it
    assert choose(layer_with(w), "auto", ["nm:1:2"], cheaper, 128).format == "nm:1:2"


def test_forced_format_that_does_not_fit_stays_dense_with_reason() -> None:
    la = layer_with(weight(np.random.default_rng(3), density=0.9))
    c = choose(la, "nm:2:4", [], COST, 128)
    assert c.format == "dense" and "does not conform to nm:2:4" in c.reason
    forced = choose(la, "csr", [], COST, 128)
    assert forced.format == "csr" and "forced" in forced.reason  # forced even when predicted slower


def test_forced_format_without_kernel_fails_early() -> None:
    with pytest.raises(SparsecError, match="no x86 kernel"):
        check_forced("bsr:3x5", Kernels(lambda f: False))
    check_forced("auto", Kernels(lambda f: False))


def test_candidates_need_kernel_and_cost_entry() -> None:
    only_csr = CostModel("x86", "t", {"dense": {"1": [1, 0, 0]}, "csr": {"1": [1, 0, 0]}}, "")
    assert candidates(Kernels(lambda f: True), only_csr) == ["csr"]
    assert candidates(Kernels(lambda f: f.startswith("bsr")), COST) == [
        p for p in candidates(Kernels(lambda f: True), COST) if "bsr" in p
    ]


def test_node_cost_keeps_tiny_layers_dense() -> None:
    """A layer whose dense op takes about as long as a sparse node costs by itself stays dense whatever its
    density (PaddleOCR cls: 1x1 convs on one pixel), the same layer at a large M goes sparse."""
    import dataclasses

    w = weight(np.random.default_rng(4), density=0.05)
    la = layer_with(w)
    tiny = CostModel("x86", "t", {**COST.table, "dense": {"128": [1.0, 0.0, 0.0]}}, "", node_us=2.0)
    assert w.size * 1 / 1000 < 2.0  # the whole dense op at M=1: under the node cost
    assert choose(la, "auto", ["csr"], tiny, 1).format == "dense"
    big = choose(la, "auto", ["csr"], tiny, 4096)
    assert big.format == "csr" and big.speedup == pytest.approx(
        4096 * w.size / (4096 * 4 * np.count_nonzero(w) + 2000.0)
    )
    assert dataclasses.replace(tiny, node_us=0.0).node_us == 0.0


def test_conv_im2col_is_charged_to_sparse() -> None:
    """Same density and product cost per pixel: the pointwise conv goes sparse, the 3x3 one pays for its im2col
    (about 1 ns per col element with 8-pixel rows, against 1 ns per dense MAC at N=2) and ORT's faster kxk Conv,
    and stays dense."""
    from onnx import helper

    from tests.passes.graphs import model

    def w(k: int) -> np.ndarray:
        a = np.zeros(2 * 10 * k * k, np.float32)
        a[::10] = 1.0  # exactly 10% nonzeros
        return a.reshape(2, 10, k, k)

    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["y1"], name="pw"),
        helper.make_node("Conv", ["x", "w3"], ["y3"], name="k3", pads=[1, 1, 1, 1]),
    ]
    m = model(nodes, {"w1": w(1), "w3": w(3)}, {"x": [1, 10, 8, 8]}, {"y1": [1, 2, 8, 8], "y3": [1, 2, 8, 8]})
    layers = {la.name: la for la in find_layers(m)}
    pw = choose(layers["pw"], "auto", ["csr"], COST, layers["pw"].rows or 1)
    k3 = choose(layers["k3"], "auto", ["csr"], COST, layers["k3"].rows or 1)
    assert pw.format == "csr" and pw.speedup is not None and pw.speedup > MARGIN
    assert k3.format == "dense" and k3.speedup is not None and k3.speedup < MARGIN < pw.speedup


def _epilogue_model(w: np.ndarray, x_dims: list[int | str], tail: str, const_bias: bool = True) -> onnx.ModelProto:
    """x @ W^T, then an Add of a constant [N] bias (or of a second input), then ``tail``: "" (nothing), "residual"
    (an Add of the input ``r``), "gelu_last" (the erf GELU as PyTorch exports it, its 0.5 last; "gelu_first",
    "gelu_inner": the 0.5 elsewhere; "gelu_wrong": y / 2 into the Erf, not a GELU), "gelu_op" (ONNX's Gelu) or
    "relu"."""
    n = w.shape[0]
    out = [*x_dims[:-1], n]
    other = "b" if const_bias else "x2"
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"], name="fc"), helper.make_node("Add", ["mm", other], ["yb"])]
    inits = {"w": np.ascontiguousarray(w.T), **({"b": np.ones(n, np.float32)} if const_bias else {})}
    inputs = {"x": x_dims, **({} if const_bias else {"x2": out})}
    if tail == "residual":
        nodes.append(helper.make_node("Add", ["yb", "r"], ["y"]))
        inputs["r"] = out
    elif tail.startswith("gelu_"):
        inits.update(s2=np.array(np.sqrt(2.0), np.float32), one=np.array(1.0, np.float32))
        inits["half"] = np.array(0.5, np.float32)
        if tail == "gelu_wrong":  # not GELU: y / 2 into the Erf
            inits["s2"] = np.array(2.0, np.float32)
        nodes += [
            helper.make_node("Div", ["yb", "s2"], ["d"]),
            helper.make_node("Erf", ["d"], ["e"]),
            helper.make_node("Add", ["e", "one"], ["e1"]),
        ]
        if tail == "gelu_first":  # (y * 0.5) * (1 + erf)
            nodes += [helper.make_node("Mul", ["yb", "half"], ["p"]), helper.make_node("Mul", ["p", "e1"], ["y"])]
        elif tail == "gelu_inner":  # y * ((1 + erf) * 0.5)
            nodes += [helper.make_node("Mul", ["e1", "half"], ["p"]), helper.make_node("Mul", ["yb", "p"], ["y"])]
        else:  # (y * (1 + erf)) * 0.5, as PyTorch exports it
            nodes += [helper.make_node("Mul", ["yb", "e1"], ["p"]), helper.make_node("Mul", ["p", "half"], ["y"])]
    elif tail == "relu":
        nodes.append(helper.make_node("Relu", ["yb"], ["y"]))
    elif tail == "gelu_op":
        nodes.append(helper.make_node("Gelu", ["yb"], ["y"]))
    else:
        nodes.append(helper.make_node("Identity", ["yb"], ["y"]))
    return model(nodes, inits, inputs, {"y": out}, opset=20 if tail == "gelu_op" else 17)


def _ort_ops(m: onnx.ModelProto, tmp_path: Path) -> list[str]:
    """The op types ORT's CPU EP runs for ``m`` (its optimized graph), less the MatMul/Gemm, Reshapes and Identity."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    return sorted(op for op in ops if op not in ("MatMul", "Gemm", "Reshape", "Identity"))


@pytest.mark.parametrize(
    ("x_dims", "tail", "const_bias", "absorbed"),
    [
        (["batch", "seq", "K"], "", True, ("Add",)),  # a symbolic dim: ORT runs MatMul, then the Add
        (["batch", "K"], "", True, ()),  # 2-D: ORT's Gemm takes the bias
        ([2, 7, "K"], "", True, ()),  # every dim known: ORT reshapes to 2-D and takes the bias into a Gemm
        (["batch", "seq", "K"], "", False, ()),  # not a constant bias: the kernel takes no such Add
        (["batch", "seq", "K"], "residual", True, ("Add", "Add")),
        ([2, 7, "K"], "residual", True, ("Add",)),  # the Gemm has the bias, the residual Add stays
        (["batch", "seq", "K"], "gelu_last", True, ("BiasGelu",)),  # ORT fuses the bias Add and the GELU
        (["batch", "seq", "K"], "gelu_first", True, ("BiasGelu",)),
        (["batch", "seq", "K"], "gelu_inner", True, ("Add", "Div", "Erf", "Add", "Mul", "Mul")),  # not fused
        (["batch", "seq", "K"], "gelu_wrong", True, ("Add",)),  # not GELU's constants: neither fuses it
        ([2, 7, "K"], "gelu_last", True, ("Gelu",)),
        (["batch", "seq", "K"], "gelu_op", True, ("BiasGelu",)),  # ONNX's Gelu (opset 20) as well
        (["batch", "seq", "K"], "relu", True, ("Add",)),  # a Relu is not counted (it costs ORT little)
    ],
)
def test_absorbed_nodes_are_what_ort_runs(
    tmp_path: Path, x_dims: list[int | str], tail: str, const_bias: bool, absorbed: tuple[str, ...]
) -> None:
    """The nodes a sparse kernel's epilogue takes in, as ORT runs them after a dense MatMul: checked against ORT's
    own optimized graph, so a future ORT that fuses differently fails here (the remaining ops beside them are the
    ones the kernel does not absorb)."""
    w = weight(np.random.default_rng(5), density=0.1)
    m = _epilogue_model(w, [w.shape[1] if d == "K" else d for d in x_dims], tail, const_bias)
    assert find_layers(m)[0].absorbed == absorbed
    ort_ops = _ort_ops(m, tmp_path)
    rest = {"relu": ["Relu"], "gelu_wrong": ["Add", "Div", "Erf", "Mul", "Mul"]}.get(tail, [])
    expected = sorted([*absorbed, *rest, *([] if const_bias else ["Add"])])  # the kernel takes in every one
    assert ort_ops == expected


def test_absorbed_nodes_are_credited_to_dense() -> None:
    """The dense side of the prediction pays ORT's epilogue nodes (cost_model.absorbed_us), which the sparse kernel
    takes in: the same layer is predicted that much faster sparse, a BiasGelu more than an Add."""
    import dataclasses

    from sparsec.passes.choose import predicted_speedup
    from sparsec.passes.cost_model import absorbed_us

    w = weight(np.random.default_rng(6), density=0.1)
    la = find_layers(_epilogue_model(w, ["batch", "seq", w.shape[1]], "gelu_last"))[0]
    assert la.absorbed == ("BiasGelu",)
    with_gelu = predicted_speedup(la, COST, 128)("csr")
    without = predicted_speedup(dataclasses.replace(la, absorbed=()), COST, 128)("csr")
    with_add = predicted_speedup(dataclasses.replace(la, absorbed=("Add",)), COST, 128)("csr")
    dense_us = COST.predict_us("dense", la.k, la.n, la.k * la.n, 128)
    assert with_gelu == pytest.approx(without * (dense_us + absorbed_us(128, la.n, ("BiasGelu",))) / dense_us)
    assert with_gelu > with_add > without
    assert absorbed_us(128, la.n, ("Add", "Add")) == pytest.approx(2 * absorbed_us(128, la.n, ("Add",)))


def test_small_ffn_goes_sparse_with_its_bias_fused(tmp_path: Path) -> None:
    """48 -> 96 -> 48 at 85%: fc1's bias Add and GELU are one BiasGelu in ORT, fc2's bias and residual two Adds.
    Predicted below 1x without crediting them to dense, sparse with it (the all-csr artifact measured 1.21x ORT dense
    in the model); the artifact matches ORT on fresh random inputs."""
    import json

    from models.synthetic import transformer_ffn
    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions
    from sparsec.verify import compare_artifact, random_feeds

    src = tmp_path / "ffn.onnx"
    onnx.save(transformer_ffn(density=0.15, seed=4), str(src))
    art = compile_model(src, tmp_path / "ffn.sparsec", CompileOptions(format="auto", verify=False)).artifact
    layers = {la["name"]: la for la in json.loads((art / "manifest.json").read_text())["layers"]}
    assert layers["fc1"]["format"] != "dense" and "bias" in layers["fc1"]["epilogue"]
    feeds = random_feeds(onnx.load(str(src)), {"batch": 2, "seq": 7}, seed=11)
    assert max(compare_artifact(src, art, feeds).values()) < 1e-4
