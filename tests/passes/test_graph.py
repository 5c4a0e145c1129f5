"""Graph helpers see values read inside subgraphs (If/Loop/Scan bodies) as reads of the enclosing node."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from sparsec.passes.graph import GraphIndex, node_reads, remove_unused_initializers, subgraph_reads, topo_sort


def _if_node() -> tuple:
    inner = helper.make_graph(
        [
            helper.make_node("Add", ["outer_a", "local_c"], ["t0"]),
            helper.make_node("Identity", ["t0"], ["t1"]),  # t0 is defined inside: not an outer read
        ],
        "then",
        [],
        [helper.make_tensor_value_info("t1", TensorProto.FLOAT, [2])],
        initializer=[numpy_helper.from_array(np.ones(2, np.float32), "local_c")],
    )
    nested = helper.make_graph(
        [helper.make_node("If", ["cond2"], ["e0"], then_branch=inner, else_branch=inner)],
        "else",
        [],
        [helper.make_tensor_value_info("e0", TensorProto.FLOAT, [2])],
    )
    return helper.make_node("If", ["cond"], ["out"], then_branch=inner, else_branch=nested)


def test_subgraph_reads_are_outer_names_only() -> None:
    node = _if_node()
    assert subgraph_reads(node) == {"outer_a", "cond2"}
    assert node_reads(node) == ["cond", "cond2", "outer_a"]


def _model_with_if() -> object:
    node = _if_node()
    producer = helper.make_node("Relu", ["x"], ["outer_a"])
    cond2 = helper.make_node("Identity", ["cond"], ["cond2"])
    g = helper.make_graph(
        [node, producer, cond2],  # out of order: the If reads outer_a and cond2 only through its branches
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2])],
        initializer=[numpy_helper.from_array(np.ones(2, np.float32), "unused")],
    )
    return helper.make_model(g)


def test_topo_sort_orders_subgraph_producers_first() -> None:
    m = _model_with_if()
    topo_sort(m.graph)
    assert [n.op_type for n in m.graph.node] == ["Relu", "Identity", "If"]


def test_consumers_and_unused_initializers_count_subgraph_reads() -> None:
    m = _model_with_if()
    m.graph.node[1].input[0] = "unused"  # now the initializer is read only by the Relu ...
    m.graph.node[0].attribute[0].g.node[0].input[0] = "unused"  # ... and inside the If's then branch
    m.graph.node.remove(m.graph.node[1])
    idx = GraphIndex(m)
    assert {n.op_type for n in idx.consumers["unused"]} == {"If"}
    assert idx.sole_consumer("unused") is None  # an implicit read is never a fusable single use
    remove_unused_initializers(m.graph)
    assert [t.name for t in m.graph.initializer] == ["unused"]
    m.graph.node.remove(m.graph.node[0])
    remove_unused_initializers(m.graph)
    assert list(m.graph.initializer) == []
