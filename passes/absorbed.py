"""The nodes ORT runs after a dense MatMul that a sparse kernel's epilogue takes in (``Layer.absorbed``).

The cost tables time ORT's MatMul alone, and the sparse kernel alone. In a model, ORT 1.32's CPU EP runs a MatMul's
epilogue as nodes of its own, which the epilogue fusion (passes/epilogue_rules.py) puts into the sparse kernel:

- a bias Add (an Add of a constant [N]): its own node where the activation has a symbolic dim; a 2-D activation or one
  whose dims are all known makes ORT fold MatMul + Add into a Gemm (with Reshapes around it), which takes the bias in;
- an erf GELU after the bias: ORT's BiasGelu (with the bias Add), or its Gelu where the bias went into a Gemm; a
  GELU whose 0.5 multiplies ``1 + erf`` first ORT does not fuse, and runs as its five nodes;
- a residual Add after the bias (ORT 1.32's CPU EP forms no SkipLayerNormalization: MiniLM-L3 keeps its Adds).

Checked with ORT's optimized model (``SessionOptions.optimized_model_filepath``) on one-MatMul models, 2026-12-07.
The dense side of a prediction pays for these nodes (cost_model.absorbed_us).
"""

from __future__ import annotations

import math

import onnx_ir as ir

from .epilogue_base import residual_problem
from .graph import attr, constant, consumers, dims, is_onnx, is_scalar, other_operand, sole_consumer


def _gelu_nodes(y: ir.Value) -> tuple[str, ...] | None:
    """The GELU reading ``y`` as ORT runs it: ("Gelu",) for the Gelu op and for an erf GELU ORT fuses, the exported
    nodes themselves where ORT does not fuse it; None when no GELU reads ``y``. An erf GELU must have GELU's
    constants (those FuseErfGelu takes in, ORT's fusion as well): ``y / sqrt 2`` or ``y * (1 / sqrt 2)`` into an
    Erf, 1 added to it (``a``), and ``y * a * 0.5`` with the 0.5 applied last or first (ORT 1.32 fuses these) or to
    ``a`` (``y * (a * 0.5)``: ORT runs the five nodes)."""
    readers = consumers(y)
    if len(readers) == 1 and readers[0].op_type == "Gelu":
        return ("Gelu",) if attr(readers[0], "approximate", "none") == "none" else None  # tanh: stays ORT's
    if len(readers) != 2:
        return None
    scaled = [
        n
        for n in readers
        if (is_onnx(n, "Div") and is_scalar(other_operand(n, y), math.sqrt(2.0)))
        or (is_onnx(n, "Mul") and is_scalar(other_operand(n, y), 1 / math.sqrt(2.0)))
    ]
    erf = sole_consumer(scaled[0].outputs[0]) if len(scaled) == 1 else None
    if not is_onnx(erf, "Erf"):
        return None
    plus = sole_consumer(erf.outputs[0])
    if not is_onnx(plus, "Add") or not is_scalar(other_operand(plus, erf.outputs[0]), 1.0):
        return None
    mul = next(n for n in readers if n is not scaled[0])
    form = _halved(mul, y, plus.outputs[0]) if is_onnx(mul, "Mul") else ""
    if form == "inner":
        return (scaled[0].op_type, "Erf", "Add", "Mul", "Mul")
    return ("Gelu",) if form else None


def _halved(mul: ir.Node, y: ir.Value, a: ir.Value) -> str:
    """Where ``mul`` (a Mul reading ``y``) applies the 0.5 of ``y * a * 0.5``: "last", "first", "inner" or ""."""
    other, out = other_operand(mul, y), mul.outputs[0]
    after = sole_consumer(out)
    if other is a:  # (y * a) * 0.5
        return "last" if is_onnx(after, "Mul") and is_scalar(other_operand(after, out), 0.5) else ""
    if is_scalar(other, 0.5):  # (y * 0.5) * a
        return "first" if is_onnx(after, "Mul") and other_operand(after, out) is a else ""
    inner = other.producer() if other is not None else None  # y * (a * 0.5)
    return "inner" if is_onnx(inner, "Mul") and a in inner.inputs and is_scalar(other_operand(inner, a), 0.5) else ""


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
    bias_node = () if gemm else ("Add",)
    gelu = _gelu_nodes(y)
    if gelu == ("Gelu",):  # ORT's Gelu, with the bias Add: its BiasGelu
        return ("Gelu",) if gemm else ("BiasGelu",)
    if gelu is not None:
        return (*bias_node, *gelu)
    return (*bias_node, "Add") if _residual(sole_consumer(y), y) else bias_node
