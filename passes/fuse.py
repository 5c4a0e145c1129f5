"""Fuse: grow each sparsec node by the epilogue that follows it, ``Y = act(X @ W^T + bias + residual)``.

The rules are ``passes/epilogue_rules.py`` (onnxscript patterns, checks and rewrites). They are applied here, one
sparsec node at a time in graph order, rather than with ``RewriteRuleSet.apply_to_model``: an epilogue belongs to
one layer (a node between two sparse layers joins the first), the grown node takes its layer's place in the graph,
and the model is left otherwise as it was (``apply_to_model`` also names every unnamed node and tags the nodes it
makes, which would change every artifact's bytes). Fusion happens only through values with a single consumer and
never past a graph output; ``inspect`` shows, per layer, why the node after it was not fused.
"""

from __future__ import annotations

from dataclasses import replace

import onnx_ir as ir
from onnxscript.rewriter import RewriteRuleSet

from sparsec import node as sparse_node

from .epilogue_rules import Fusion, rules, where
from .graph import remove_dead_constants, remove_unused_initializers, stable_topo_sort
from .state import Compilation

REACH = 11  # the deepest root of an epilogue pattern, in nodes after the sparsec node (QDQ model's GELU: 11)


def _downstream(node: ir.Node) -> list[ir.Node]:
    """The nodes within ``REACH`` steps after ``node`` in its graph, in graph order (the roots a rule may match)."""
    found: dict[ir.Node, None] = {}
    frontier = list(node.outputs)
    for _ in range(REACH):
        nxt: list[ir.Value] = []
        for value in frontier:
            for use in value.uses():
                if use.node.graph is node.graph and use.node not in found:
                    found[use.node] = None
                    nxt.extend(use.node.outputs)
        frontier = nxt
    graph = node.graph
    assert graph is not None
    return [n for n in graph if n in found]


class FusePass(ir.passes.InPlacePass):
    """Fold bias Adds, a residual Add and an activation into every sparsec node."""

    def __init__(self, state: Compilation) -> None:
        super().__init__()
        self.state = state

    def _grow(
        self, model: ir.Model, node: ir.Node, ruleset: RewriteRuleSet, fusion: Fusion
    ) -> tuple[ir.Node, list[str]]:
        """The sparsec node grown as far as the rules go, and the steps fused."""
        graph = node.graph
        assert graph is not None
        layer = sparse_node.layer_name(node)
        steps: list[str] = []
        while True:
            fusion.focus = node
            for root in _downstream(node):
                delta = next((d for r in ruleset if (d := r.try_rewrite(model, graph, root)) is not None), None)
                if delta is not None:
                    break
            else:
                return node, steps
            at = where(root)
            for init in delta.new_initializers:
                graph.initializers.pop(str(init.name), None)  # a summed bias replaces the old one, same name
                graph.register_initializer(init)
            new = delta.new_nodes[-1]
            ir.convenience.replace_nodes_and_values(
                graph, node, delta.match.nodes, delta.new_nodes, delta.match.outputs, delta.new_outputs
            )
            fusion.fused(layer, at)
            steps.append(fusion.step)
            node = new

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        qdq = frozenset(la.name for la in self.state.records() if la.qdq is not None)
        target = self.state.target
        fusion = Fusion(quantize=target.fuses_quantization, float_layers=qdq, held_to_ort=not target.foreign_ort)
        ruleset = rules(fusion)
        modified = False
        for node in [n for n in graph if sparse_node.read(n) is not None]:
            grown, steps = self._grow(model, node, ruleset, fusion)
            modified = modified or bool(steps)
            name = sparse_node.layer_name(grown)
            layer = self.state.layers.get(name)
            if layer is None or layer.kernel is None:
                continue
            kernel = sparse_node.read(grown)
            assert kernel is not None
            epilogue = replace(kernel.epilogue, steps=tuple(steps))
            notes = fusion.unfused(name) + ([] if kernel.epilogue.act != "none" else _consumers_note(grown))
            self.state.update(
                replace(layer, node=grown, kernel=replace(layer.kernel, epilogue=epilogue), unfused=tuple(notes))
            )
        remove_dead_constants(graph)
        remove_unused_initializers(graph)
        stable_topo_sort(graph)
        return ir.passes.PassResult(model, modified=modified)


def _consumers_note(node: ir.Node) -> list[str]:
    """Why nothing can follow the layer into its kernel, when its output is shared or leaves the graph."""
    y = node.outputs[0]
    if y.is_graph_output():
        return ["its output is a graph output: nothing after it is fused"]
    users = sorted({u.node.op_type for u in y.uses()})
    if len(y.uses()) > 1:
        return [f"its output feeds {len(y.uses())} nodes ({', '.join(users)}): only a single consumer is fused"]
    return []
