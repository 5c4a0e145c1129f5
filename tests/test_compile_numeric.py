"""Whole compiler, every x86 format: compile, run through ORT + the sparsec EP, compare with ORT on the original.

One model per format holds five layers side by side at densities 0, 0.01, 0.1, 0.5 and 1.0 (N:M: of the pattern's
maximum), on odd sizes (K=37, N=29) with a symbolic batch, run at batch 1, 3 and 64 on fresh random inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from sparsec.formats import list_presets
from sparsec.targets.x86.target import X86Target
from tests.passes.graphs import K, N, compile_and_compare, model
from tests.targets.test_x86_kernels import DENSITIES, random_weight

TARGET = X86Target()
FORMATS = [f for f in list_presets() if f != "dense" and TARGET.supports(f)]


def side_by_side(fmt: str, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes, inits, outs = [], {}, {}
    for i, d in enumerate(DENSITIES):
        w = random_weight(fmt, d, rng)
        inits[f"w{i}"] = np.ascontiguousarray(w.T)
        nodes.append(helper.make_node("MatMul", ["x", f"w{i}"], [f"y{i}"], name=f"d{i}"))
        outs[f"y{i}"] = ["batch", N]
    return model(nodes, inits, {"x": ["batch", K]}, outs)


def test_every_supported_preset_is_tested() -> None:
    assert {"csr", "bsr:1x16", "bsr:16x1", "bsr:4x4", "bsr:8x1", "bsr:1x8", "nm:2:4"} <= set(FORMATS)


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_end_to_end(fmt: str, tmp_path: Path) -> None:
    rewritten, err = compile_and_compare(side_by_side(fmt), tmp_path, fmt=fmt, batches=(1, 3, 64))
    assert err < 1e-4
    manifest = json.loads((tmp_path / "m.sparsec" / "manifest.json").read_text())
    assert [la["format"] for la in manifest["layers"]] == [fmt] * len(DENSITIES)
    assert [n.op_type for n in rewritten.graph.node] == ["EPContext"] * len(DENSITIES)


def test_auto_on_rank3_input(tmp_path: Path) -> None:
    """``auto`` on [batch, seq, K] activations; whatever it picks must match ORT."""
    rng = np.random.default_rng(3)
    w = random_weight("csr", 0.05, rng)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")]
    m = model(nodes, {"w": np.ascontiguousarray(w.T)}, {"x": ["batch", 5, K]}, {"y": ["batch", 5, N]})
    _, err = compile_and_compare(m, tmp_path, fmt="auto", batches=(1, 4))
    assert err < 1e-4
