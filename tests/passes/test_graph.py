"""Graph helpers see values read inside subgraphs (If/Loop/Scan bodies) as reads of the enclosing node."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

from sparsec.passes.graph import consumers, reads, remove_unused_initializers, sole_consumer, stable_topo_sort


def _if_node() -> onnx.NodeProto:
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


def _model_with_if(nodes_in_order: bool = False) -> onnx.ModelProto:
    node = _if_node()
    producer = helper.make_node("Relu", ["x"], ["outer_a"])
    cond2 = helper.make_node("Identity", ["cond"], ["cond2"])
    g = helper.make_graph(
        # out of order: the If reads outer_a and cond2 only through its branches
        [producer, cond2, node] if nodes_in_order else [node, producer, cond2],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2])],
        initializer=[numpy_helper.from_array(np.ones(2, np.float32), "unused")],
    )
    return helper.make_model(g)


def test_subgraph_reads_are_outer_names_only() -> None:
    m = ir.from_proto(_model_with_if(nodes_in_order=True))
    if_node = next(n for n in m.graph if n.op_type == "If")
    names = [str(v.name) for v in reads(if_node)]
    assert names[0] == "cond"  # its own input first
    assert set(names[1:]) == {"outer_a", "cond2"}  # then the outer values its branches read, never local ones


def test_topo_sort_orders_subgraph_producers_first() -> None:
    m = ir.from_proto(_model_with_if())
    stable_topo_sort(m.graph)
    assert [n.op_type for n in m.graph] == ["Relu", "Identity", "If"]


def test_consumers_and_unused_initializers_count_subgraph_reads() -> None:
    p = _model_with_if(nodes_in_order=True)
    p.graph.node[0].input[0] = "unused"  # now the initializer is read only by the Relu ...
    p.graph.node[2].attribute[0].g.node[0].input[0] = "unused"  # ... and inside the If's else branch (an If)
    del p.graph.node[0]
    m = ir.from_proto(p)
    unused = m.graph.initializers["unused"]
    assert {n.op_type for n in consumers(unused)} == {"If"}  # the read inside the branch
    assert sole_consumer(unused) is None  # an implicit read is never a fusable single use
    remove_unused_initializers(m.graph)
    assert list(m.graph.initializers) == ["unused"]
    m.graph.remove(next(n for n in m.graph if n.op_type == "If"))
    remove_unused_initializers(m.graph)
    assert list(m.graph.initializers) == []
