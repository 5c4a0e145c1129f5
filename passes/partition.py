"""Partition: what the sparsec EP claims. Every sparsec node is claimed; the rest of the graph stays on ORT's CPU EP.

Sparsec nodes that feed each other directly form one region (a connected component of the sparse subgraph);
the region id goes into the node config so the EP and reports can group them. The pass also checks that every
claimed node has a kernel on the target, so a model never reaches the target build with a node it cannot run.
"""

from __future__ import annotations

from dataclasses import replace

import networkx as nx
import onnx_ir as ir

from sparsec import node as sparse_node
from sparsec.errors import SparsecError

from .state import Compilation


class PartitionPass(ir.passes.InPlacePass):
    """Assign region ids to sparsec nodes (node config and layer records)."""

    def __init__(self, state: Compilation) -> None:
        super().__init__()
        self.state = state

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        target = self.state.target
        g = nx.Graph()
        nodes: dict[str, ir.Node] = {}
        for node in model.graph:
            kernel = sparse_node.read(node)
            if kernel is None:
                continue
            if not target.supports(kernel.format):
                raise SparsecError(f"layer {node.name}: format {kernel.format} has no {target.name} kernel")
            layer = sparse_node.layer_name(node)
            nodes[layer] = node
            g.add_node(layer)
        for layer, node in nodes.items():
            for v in node.inputs:
                producer = v.producer() if v is not None else None
                if producer is not None and sparse_node.read(producer) is not None:
                    g.add_edge(sparse_node.layer_name(producer), layer)
        order = list(nodes)
        components = sorted(nx.connected_components(g), key=lambda c: min(order.index(x) for x in c))
        for rid, comp in enumerate(components):
            for layer in comp:
                node = nodes[layer]
                kernel = sparse_node.read(node)
                assert kernel is not None
                config = sparse_node.encode(replace(kernel, region=rid))
                node.attributes["ep_cache_context"] = ir.AttrString("ep_cache_context", config)
                record = self.state.layers.get(layer)
                if record is not None and record.kernel is not None:
                    self.state.update(replace(record, kernel=replace(record.kernel, region=rid)))
        return ir.passes.PassResult(model, modified=bool(nodes))
