"""Per-layer verification on ORT's own inputs, for models that quantize activations after float sparse layers.

In such a model a float sum rounded in another order (the sparse kernel's, against ORT's dense MatMul) can move a
value across a rounding boundary of the next QuantizeLinear: one quantization step, which later layers spread
(measured: MiniLM-L3 pruned 90%, QDQ, batch 8: 2.4% on the end output, every sparse layer within 1e-6 of ORT on the
same inputs). Comparing the end outputs, or each layer after the others ran, then measures those flips, not the
kernels. The *local* probe feeds every sparse node the reference's values of its inputs instead: each of its
activation and residual inputs becomes a new graph input ``NAME__reference``, fed ORT's value of ``NAME``; an input
sparsec computes in front of the node (an integer layer's DequantizeLinear, a Transpose) is rewired one step back.
"""

from __future__ import annotations

import onnx

from . import node as sparse_node

SUFFIX = "__reference"


def quantizes_activations(model: onnx.ModelProto) -> bool:
    """The model quantizes a value at run time (QDQ's QuantizeLinear or dynamic quantization)."""
    return any(n.op_type in ("QuantizeLinear", "DynamicQuantizeLinear") for n in model.graph.node)


def local_probe(rewritten: onnx.ModelProto, known: set[str]) -> tuple[onnx.ModelProto, dict[str, str]]:
    """A copy of ``rewritten`` whose sparse nodes read their inputs from new graph inputs, and {new input: the value
    of the reference (a name in ``known``) to feed it}."""
    out = onnx.ModelProto()
    out.CopyFrom(rewritten)
    graph = out.graph
    producers = {o: n for n in graph.node for o in n.output}
    inits = {t.name for t in graph.initializer}
    typed = {v.name: v for v in [*graph.value_info, *graph.input, *graph.output]}
    fed: dict[str, str] = {}

    def rewire(node: onnx.NodeProto, i: int, step_back: bool) -> None:
        name = node.input[i]
        if not name or name in inits:
            return
        if name in known:
            new = name + SUFFIX
            if new not in fed:
                fed[new] = name
                vi = onnx.ValueInfoProto()
                if name in typed:
                    vi.CopyFrom(typed[name])
                else:
                    vi.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
                vi.name = new
                graph.input.append(vi)
            node.input[i] = new
        elif step_back and name in producers and producers[name].domain != sparse_node.DOMAIN:
            before = producers[name]
            for j in range(len(before.input)):
                rewire(before, j, step_back=False)

    for n in sparse_node.sparse_protos(out):
        for i in range(len(n.input)):
            rewire(n, i, step_back=True)
    return out, fed
