"""The nodes ORT runs after a dense MatMul that a sparse kernel's epilogue takes in (``Layer.absorbed``).

The cost tables time ORT's MatMul alone, and the sparse kernel alone. In a model, ORT 1.32's CPU EP runs a MatMul's
epilogue as nodes of its own, which the epilogue fusion (passes/epilogue_rules.py) puts into the sparse kernel:

- a bias Add (an Add of a constant [N]): its own node where the activation has a symbolic dim; a 2-D activation or one
  whose dims are all known makes ORT fold MatMul + Add into a Gemm (with Reshapes around it), which takes the bias in;
- an erf GELU after the bias: ORT's BiasGelu (with the bias Add), or its Gelu where the bias went into a Gemm;
- a residual Add after the bias (ORT 1.32's CPU EP forms no SkipLayerNormalization: MiniLM-L3 keeps its Adds).

Checked with ORT's optimized model (``SessionOptions.optimized_model_filepath``) on one-MatMul models, 2026-12-07.
The dense side of a prediction pays for these nodes (cost_model.absorbed_us).
"""

from __future__ import annotations

import onnx_ir as ir

from .epilogue_base import residual_problem
from .graph import attr, constant, consumers, dims, is_onnx, other_operand, sole_consumer


def _gelu_reads(y: ir.Value) -> bool:
    """``y`` is read by a GELU: the Gelu op, or an erf GELU as exported (``y / sqrt 2`` or ``y * (1 / sqrt 2)`` into
    an Erf, and ``y`` multiplied by the result)."""
    readers = consumers(y)
    if len(readers) == 1 and readers[0].op_type == "Gelu":
        return attr(readers[0], "approximate", "none") == "none"  # the tanh form stays ORT's
    div_or_mul = [n for n in readers if is_onnx(n, "Div") or is_onnx(n, "Mul")]
    scaled = [n for n in div_or_mul if constant(other_operand(n, y)) is not None]
    erf = [s for s in scaled if is_onnx(sole_consumer(s.outputs[0]), "Erf")]
    return len(readers) == 2 and len(erf) == 1 and any(is_onnx(n, "Mul") and n is not erf[0] for n in readers)


def _residual(add: ir.Node | None, y: ir.Value) -> bool:
    """``add`` adds a residual to ``y`` that FuseResidual takes in."""
    return add is not None and is_onnx(add, "Add") and not residual_problem(y, other_operand(add, y))


def absorbed_nodes(node: ir.Node, n: int) -> tuple[str, ...]:
    """The op types of the nodes ORT would run after a float MatMul that its sparse kernel absorbs (module doc)."""
    out = node.outputs[0]
    add = sole_consumer(out)
    if add is None or not is_onnx(add, "Add"):
        return ()
    bias = constant(other_operand(add, out))
    if bias is None or bias.size != n or bias.shape[-1:] != (n,):
        return ()
    x_dims = dims(node.inputs[0])
    if x_dims is None:
        return ()
    gemm = len(x_dims) <= 2 or all(isinstance(d, int) for d in x_dims)  # ORT: Gemm with the bias
    y = add.outputs[0]
    if _gelu_reads(y):
        return ("Gelu",) if gemm else ("BiasGelu",)
    bias_node = () if gemm else ("Add",)
    return (*bias_node, "Add") if _residual(sole_consumer(y), y) else bias_node
