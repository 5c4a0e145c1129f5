"""Sparse convolutions end to end: compile, run through ORT + the sparsec EP, compare with ORT on the original.

Every geometry of tests/conv_graphs.py (1x1, strided 1x1, 3x3 same/valid/strided, dilated with asymmetric pads,
5x5) with every format family, on odd channel counts, at batch 1 and 4.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from tests.conv_graphs import ACTS, C_IN, C_OUT, GEOMETRIES, H, W, conv_weight, epilogue_model, geometry_model
from tests.passes.graphs import compile_and_compare, model

FORMATS = ("csr", "bsr:4x1", "bsr:1x4", "nm:2:4")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_geometry(fmt: str, tmp_path: Path) -> None:
    m = geometry_model(0.5 if fmt.startswith("nm") else 0.3, seed=len(fmt))
    if fmt.startswith("nm"):
        from sparsec.prune import parse_pattern, prune_model

        m, _ = prune_model(m, parse_pattern("nm:2:4"))
    rewritten, err = compile_and_compare(m, tmp_path, fmt=fmt, batches=(1, 4))
    assert err < 1e-4
    assert [n.op_type for n in rewritten.graph.node] == ["EPContext"] * len(GEOMETRIES)
    manifest = json.loads((tmp_path / "m.sparsec" / "manifest.json").read_text())
    assert {la["op"] for la in manifest["layers"]} == {"Conv"}
    assert [la["format"] for la in manifest["layers"]] == [fmt] * len(GEOMETRIES)


def test_epilogues(tmp_path: Path) -> None:
    """Bias, residual and every activation fused into conv nodes (3x3 and 1x1), numerically equal to ORT."""
    rewritten, err = compile_and_compare(epilogue_model(), tmp_path, fmt="csr", batches=(1, 4))
    assert err < 1e-4
    assert [n.op_type for n in rewritten.graph.node] == ["EPContext"] * len(ACTS)
    manifest = json.loads((tmp_path / "m.sparsec" / "manifest.json").read_text())
    acts = [la["epilogue"][-1].split(" ")[0] for la in manifest["layers"]]
    assert acts == ["relu", "clip", "sigmoid", "silu", "hardswish", "hardswish"]
    assert all(la["epilogue"][:2] == ["bias", "residual"] for la in manifest["layers"])


def test_grouped_and_depthwise_stay_on_ort(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("Conv", ["x", "dw"], ["y_dw"], name="dw", group=C_IN, pads=[1] * 4),
        helper.make_node("Conv", ["x", "pw"], ["y_pw"], name="pw"),
    ]
    inits = {"dw": conv_weight(rng, C_IN, 1, 3, 0.2), "pw": conv_weight(rng, C_OUT, C_IN, 1, 0.2)}
    m = model(
        nodes, inits, {"x": ["batch", C_IN, H, W]}, {"y_dw": ["batch", C_IN, H, W], "y_pw": ["batch", C_OUT, H, W]}
    )
    rewritten, err = compile_and_compare(m, tmp_path, fmt="csr", batches=(1, 4))
    assert err < 1e-4
    assert sorted(n.op_type for n in rewritten.graph.node) == ["Conv", "EPContext"]
    layers = json.loads((tmp_path / "m.sparsec" / "manifest.json").read_text())["layers"]
    assert layers[0]["format"] == "dense" and "depthwise convolution" in layers[0]["reason"]


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_auto_pad(auto_pad: str, tmp_path: Path) -> None:
    """auto_pad resolved from the static size; an even kernel with stride 2 makes SAME pads asymmetric."""
    rng = np.random.default_rng(4)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", auto_pad=auto_pad, strides=[2, 2])
    out = [6, 5] if auto_pad != "VALID" else [4, 4]
    m = model([node], {"w": conv_weight(rng, C_OUT, C_IN, 4, 0.3)}, {"x": ["batch", C_IN, H, W]},
              {"y": ["batch", C_OUT, *out]})  # fmt: skip
    rewritten, err = compile_and_compare(m, tmp_path, fmt="csr", batches=(1, 4))
    assert err < 1e-4 and [n.op_type for n in rewritten.graph.node] == ["EPContext"]
