"""partition: sparsec nodes that feed each other share a region; unsupported formats are refused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from sparsec.errors import SparsecError
from sparsec.node import decode
from tests.passes.graphs import K, model, weight, with_formats


def chain() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["a"], name="l0"),
        helper.make_node("MatMul", ["a", "w1"], ["b"], name="l1"),  # fed by l0 directly
        helper.make_node("Tanh", ["b"], ["c"]),
        helper.make_node("MatMul", ["c", "w2"], ["y"], name="l2"),  # behind an ORT node
    ]
    inits = {f"w{i}": weight(rng, K, K).T.copy() for i in range(3)}
    return model(nodes, inits, {"x": ["batch", K]}, {"y": ["batch", K]})


def test_regions_are_connected_components() -> None:
    m, layers = with_formats(chain(), {"l0": "csr", "l1": "csr", "l2": "csr"}, ("rewrite", "partition"))
    regions = {name: la.kernel.region for name, la in layers.items() if la.kernel is not None}
    assert regions == {"l0": 0, "l1": 0, "l2": 1}
    infos = {
        n.name: decode(next(a.s.decode() for a in n.attribute if a.name == "ep_cache_context"))
        for n in m.graph.node
        if n.op_type == "EPContext"
    }
    assert {k: v.region for k, v in infos.items()} == regions


def test_unsupported_format_refused() -> None:
    with pytest.raises(
        SparsecError, match="no wasm kernel"
    ):  # bsr:9x1: no SIMD128 schedule (9 rows: more than 8 accumulators, not whole vectors)
        with_formats(chain(), {"l0": "bsr:9x1"}, ("rewrite", "partition"), target="wasm")
