"""Constants: make every weight that is a constant look like one, before analysis.

1. *Initializers listed as graph inputs* (IR >= 4 allows it: an overridable default; older exporters and
   ``keep_initializers_as_inputs=True`` write every weight so). sparsec's rule: they are constants. The compiled
   model no longer takes them as inputs (a sparse kernel bakes its weight in; a weight fed at run time could not
   reach it), and the compile says so in one line. ``sparsec inspect`` lists them.
2. *Weights computed by a constant subgraph* (Constant -> Cast, ConstantOfShape, Transpose of an initializer...):
   the subgraph that produces a MatMul/Gemm/Conv weight or bias from constants only is folded into an initializer
   by onnxscript's constant folder, run on that subgraph alone (run on the whole model it would also rewrite
   shape arithmetic and Identity nodes that ORT runs anyway, changing every artifact for nothing); where the
   folder's reference ops lack an op version (DequantizeLinear before opset 19) ORT computes it. Nodes the fold
   leaves unused are removed; the rest of the graph is untouched. A weight behind DequantizeLinear is compiled as
   its float32 value (the QDQ model's meaning), not as an int8 kernel.
3. *Gathers from a dequantized constant table* (a QDQ model's embeddings) gather the stored integers and dequantize
   the rows taken (passes/dequantize_gather.py: the same values, without dequantizing the whole table per run).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

from .dequantize_gather import gather_before_dequantize
from .graph import attr, constant, quantization_constants
from .state import Compilation

SOURCE_DTYPE = "sparsec.weight_dtype"  # Value.meta key: the dtype a folded weight was stored in
# Value.meta key: (integers, scale, zero point, axis) of a weight folded from one DequantizeLinear of initializers
DEQUANTIZED = "sparsec.dequantized"
LAYERS = {"MatMul": (1,), "Gemm": (1, 2), "Conv": (1, 2)}  # op -> operands that are weights (or bias)
MAX_CONE = 64  # nodes in one weight's constant subgraph; a larger one is left to ORT


def initializer_inputs(graph: ir.Graph) -> list[ir.Value]:
    """Graph inputs that are initializers too (overridable defaults)."""
    return [v for v in graph.inputs if v.is_initializer()]


def _cone(value: ir.Value) -> list[ir.Node] | None:
    """The nodes computing ``value`` from constants only (producers first), or None when it reads a graph input, a
    subgraph, a non-default domain or more than MAX_CONE nodes."""
    seen: dict[int, ir.Node] = {}
    stack = [value]
    while stack:
        v = stack.pop()
        if v.is_graph_input():
            return None
        if v.is_initializer():
            continue
        node = v.producer()
        if node is None:  # neither an input, an initializer nor a node's output: not a constant
            return None
        if id(node) in seen:
            continue
        if node.domain not in ("", "ai.onnx") or any(
            a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values()
        ):
            return None
        seen[id(node)] = node
        if len(seen) > MAX_CONE:
            return None
        stack.extend(i for i in node.inputs if i is not None)
    graph = value.graph
    order = {id(n): i for i, n in enumerate(graph)} if graph is not None else {}
    return sorted(seen.values(), key=lambda n: order.get(id(n), 0))


def _evaluate(value: ir.Value, cone: list[ir.Node], opsets: dict[str, int]) -> ir.TensorProtocol | None:
    """``value`` computed by onnxscript's constant folder on a model holding only ``cone`` (None if it cannot)."""
    from onnxscript.optimizer import fold_constants

    leaves = {str(i.name): i for n in cone for i in n.inputs if i is not None and i.is_initializer() and i.const_value}
    graph = onnx.helper.make_graph(
        [ir.serde.serialize_node(n) for n in cone],
        "cone",
        [],
        [onnx.ValueInfoProto(name=str(value.name))],
        initializer=[ir.serde.serialize_tensor(v.const_value) for v in leaves.values() if v.const_value is not None],
    )
    for name, t in zip(leaves, graph.initializer, strict=True):
        t.name = name
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in opsets.items()])
    model = ir.from_proto(proto)
    try:
        fold_constants(model, should_fold=lambda node: True)
    except Exception:  # an op the folder cannot evaluate: ORT may
        pass
    out = model.graph.outputs[0]
    if out.producer() is None and out.const_value is not None:
        return out.const_value
    return _run_on_ort(proto, str(value.name))


def _run_on_ort(proto: onnx.ModelProto, name: str) -> ir.TensorProtocol | None:
    """The cone's output computed by ORT: onnx's reference ops, which the folder evaluates with, miss some op
    versions (DequantizeLinear before opset 19, which onnxruntime.quantization writes at opset 13-17)."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        (array,) = session.run([name], {})
    except Exception:  # ORT cannot either: the weight stays computed, as before
        return None
    return ir.tensor(array, name=name) if isinstance(array, np.ndarray) else None


def _dequantized_dtype(cone: list[ir.Node]) -> str:
    """The integer type a DequantizeLinear in ``cone`` reads (the weight as the model stores it), or ""."""
    for node in cone:
        x = node.inputs[0] if node.op_type == "DequantizeLinear" and node.inputs else None
        if x is not None and x.dtype is not None and x.dtype.is_integer():
            return str(x.dtype.numpy())
    return ""


def _single_dequantize(cone: list[ir.Node]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """(integers, scale, zero point, axis) when ``cone`` is one DequantizeLinear of initializers, else None."""
    if len(cone) != 1 or cone[0].op_type != "DequantizeLinear":
        return None
    node = cone[0]
    x, found = constant(node.inputs[0]), quantization_constants(node)
    if x is None or found is None:
        return None
    scale, zp = found
    return x, scale, np.zeros((), x.dtype) if zp is None else zp, int(attr(node, "axis", 1))


def fold_weight_subgraphs(graph: ir.Graph, opsets: dict[str, int], only: set[str] | None = None) -> list[str]:
    """Fold each layer weight computed from constants (each one named in ``only``, when given) into an initializer;
    the names folded."""
    folded: list[str] = []
    for node in list(graph):
        ops = LAYERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        for pos in ops or ():
            v = node.inputs[pos] if len(node.inputs) > pos else None
            if v is None or v.producer() is None or constant(v) is not None or v.is_graph_output():
                continue
            if only is not None and v.name not in only:
                continue
            cone = _cone(v)
            tensor = _evaluate(v, cone, opsets) if cone else None
            if tensor is None:
                continue
            name = str(v.name)
            v.name = f"{name}__computed"
            array = tensor.numpy()
            init = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(tensor.dtype))
            init.const_value = ir.tensor(array, name=name)
            quantized = _dequantized_dtype(cone or [])
            if quantized:
                init.meta[SOURCE_DTYPE] = quantized  # in memory only: the manifest's weight_dtype
                single = _single_dequantize(cone or [])
                if single is not None:
                    init.meta[DEQUANTIZED] = single
            graph.register_initializer(init)
            ir.convenience.replace_all_uses_with(v, init)
            for n in reversed(cone or []):
                if n.graph is graph and not any(o.uses() or o.is_graph_output() for o in n.outputs):
                    graph.remove(n, safe=True)
            folded.append(name)
    return folded


class ConstantsPass(ir.passes.InPlacePass):
    """Initializers listed as graph inputs become plain constants; weight subgraphs of constants are folded."""

    def __init__(self, state: Compilation) -> None:
        super().__init__()
        self.state = state

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        listed = initializer_inputs(graph)
        for v in listed:
            graph.inputs.remove(v)
        if listed:
            self.state.say(
                f"{len(listed)} initializers are also listed as graph inputs (overridable defaults, e.g. "
                f"{listed[0].name!r}): compiled as constants, so the compiled model does not take them as inputs"
            )
        folded = fold_weight_subgraphs(graph, dict(model.opset_imports))
        if folded:
            self.state.say(f"folded the constant subgraphs computing {len(folded)} weights (e.g. {folded[0]!r})")
        moved = gather_before_dequantize(graph)
        if moved:
            self.state.say(
                f"{len(moved)} Gathers from dequantized tables (e.g. {moved[0]!r}) gather the stored integers and "
                "dequantize the rows taken"
            )
        return ir.passes.PassResult(model, modified=bool(listed or folded or moved))
