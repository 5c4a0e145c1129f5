"""partition: sparsec nodes that feed each other share a region; unsupported formats are refused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from sparsec.errors import SparsecError
from sparsec.node import SparseNodeInfo
from sparsec.passes.analysis import find_layers
from sparsec.passes.graph import attr
from sparsec.passes.partition import partition
from sparsec.passes.rewrite import rewrite
from tests.passes.graphs import K, model, weight


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
    m = chain()
    rewrite(m, find_layers(m), {"l0": "csr", "l1": "csr", "l2": "csr"})
    regions = partition(m, lambda f: True, "x86")
    assert regions == {"l0": 0, "l1": 0, "l2": 1}
    infos = {
        n.name: SparseNodeInfo.decode(str(attr(n, "ep_cache_context")))
        for n in m.graph.node
        if n.op_type == "EPContext"
    }
    assert {k: v.region for k, v in infos.items()} == regions


def test_unsupported_format_refused() -> None:
    m = chain()
    rewrite(m, find_layers(m), {"l0": "csr"})
    with pytest.raises(SparsecError, match="no x86 kernel"):
        partition(m, lambda f: f != "csr", "x86")
