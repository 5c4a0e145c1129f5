"""Partition: what the sparsec EP claims. Every sparsec node is claimed; the rest of the graph stays on ORT's CPU EP.

Sparsec nodes that feed each other directly form one region (a connected component of the sparse subgraph);
the region id goes into the node config so the EP and reports can group them. The pass also checks that every
claimed node has a kernel on the target, so a model never reaches the target build with a node it cannot run.
"""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx
import onnx

from sparsec.errors import SparsecError
from sparsec.node import SparseNodeInfo, node_attributes

from .graph import attr, sparse_info


def partition(model: onnx.ModelProto, supports: Callable[[str], bool], target: str) -> dict[str, int]:
    """Assign region ids to sparsec nodes; returns layer name -> region."""
    g = nx.Graph()
    producers: dict[str, str] = {}
    infos: dict[str, tuple[onnx.NodeProto, SparseNodeInfo]] = {}
    for node in model.graph.node:
        info = sparse_info(node)
        if info is None:
            continue
        if not supports(info.format):
            raise SparsecError(f"layer {node.name}: format {info.format} has no {target} kernel")
        layer = str(attr(node, "partition_name", node.name))
        infos[layer] = (node, info)
        g.add_node(layer)
        for out in node.output:
            producers[out] = layer
    for layer, (node, _) in infos.items():
        for inp in node.input:
            if inp in producers:
                g.add_edge(producers[inp], layer)
    order = list(infos)
    regions: dict[str, int] = {}
    components = sorted(nx.connected_components(g), key=lambda c: min(order.index(x) for x in c))
    for rid, comp in enumerate(components):
        for layer in comp:
            regions[layer] = rid
    for layer, (node, info) in infos.items():
        updated = info.with_updates(region=regions[layer])
        notes = str(attr(node, "notes", ""))
        for a in node.attribute:
            if a.name == "ep_cache_context":
                a.s = node_attributes(updated, layer, notes)["ep_cache_context"].encode()  # type: ignore[union-attr]
    return regions
