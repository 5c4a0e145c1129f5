"""Epilogue rules for QDQ models: the QuantizeLinear -> DequantizeLinear pairs after a sparse layer, and a QDQ
model's GELU with its own three pairs, computed in the kernel as ORT computes them (targets whose kernels do:
``Target.fuses_quantization``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import RewriterContext
from onnxscript.rewriter.pattern import OpsetPatternBuilder

from sparsec.layer import GELU_STAGES, Kernel, Quant

from .epilogue_base import Bindings, EpilogueRule, Pattern, sparse_pattern, sparse_producer
from .graph import attr, dequantized, is_onnx, quantization_constants


@dataclass(frozen=True)
class _Quantizer:
    """A QuantizeLinear's (or DequantizeLinear's) scale, zero point and the integer type's range."""

    scale: np.float32
    zero_point: int
    lo: int
    hi: int


def _quantizer(node: ir.Node) -> tuple[_Quantizer | None, str]:
    """The constant per-tensor scale and zero point of a QuantizeLinear / DequantizeLinear, or (None, why not)."""
    if int(attr(node, "block_size", 0)):
        return None, f"blocked {node.op_type}"
    found = quantization_constants(node)
    scale = found[0] if found is not None else None
    zp = (found[1] if found[1] is not None else np.zeros((), np.uint8)) if found is not None else None
    if scale is None or zp is None or scale.size != 1 or zp.size != 1:
        return None, f"{node.op_type}'s scale and zero point are not single constants (per tensor)"
    if scale.dtype != np.float32 or zp.dtype not in (np.int8, np.uint8, np.int16, np.uint16):
        return (
            None,
            f"{node.op_type} with a {scale.dtype} scale and a {zp.dtype} zero point (float32 and 8/16-bit fused)",
        )
    s = np.float32(scale.reshape(-1)[0])
    if not (np.isfinite(s) and s > 0):
        return None, f"{node.op_type}'s scale {s} is not positive and finite"
    info = np.iinfo(zp.dtype)
    return _Quantizer(s, int(zp.reshape(-1)[0]), int(info.min), int(info.max)), ""


def _pair(quantize: ir.Node, dequantize: ir.Node) -> tuple[_Quantizer | None, str]:
    """The quantizer a QuantizeLinear -> DequantizeLinear pair shares (one constant scale and zero point, float32
    out), or (None, why not)."""
    q, why = _quantizer(quantize)
    d, why_d = _quantizer(dequantize)
    if q is None or d is None:
        return None, why or why_d
    if q != d:
        return None, "a DequantizeLinear's scale or zero point differs from its QuantizeLinear's"
    if dequantize.outputs[0].dtype != ir.DataType.FLOAT:
        return None, "a DequantizeLinear does not make float32"
    return q, ""


def _next(value: ir.Value) -> ir.Node:
    """The only consumer of a value the match made single-consumer."""
    return next(iter(value.uses())).node


def _pair_after(value: ir.Value) -> tuple[ir.Node, ir.Node]:
    """The QuantizeLinear and DequantizeLinear the match put after ``value``."""
    quantize = _next(value)
    return quantize, _next(quantize.outputs[0])


def _quant(stage: str, quantize: ir.Node) -> Quant:
    """The epilogue step of a pair ``_pair`` accepted, after ``stage``."""
    q = _quantizer(quantize)[0]
    assert q is not None
    return Quant(stage, float(q.scale), q.zero_point, q.lo, q.hi)


# Ops ORT's QDQPropagationTransformer moves a QuantizeLinear back over (onnxruntime/core/optimizer/qdq_transformer/
# qdq_propagation.cc, CanNodePropagate).
_PROPAGATES = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Slice", "MaxPool")


def _requantized(value: ir.Value) -> str:
    """The chain ``value -> Reshape/Transpose/... -> QuantizeLinear`` (as text) over which ORT propagates the
    QuantizeLinear back to ``value``'s producer, or "". Shape consumers do not count: ORT folds them when the shape
    is static, leaving the chain single."""
    chain: list[str] = []
    while not value.is_graph_output():
        users = [u.node for u in value.uses() if not is_onnx(u.node, "Shape")]
        if len(users) != 1:
            return ""
        user = users[0]
        chain.append(user.op_type)
        if is_onnx(user, "QuantizeLinear"):
            return " -> ".join(chain) if len(chain) > 1 else ""
        if not any(is_onnx(user, op) for op in _PROPAGATES):
            return ""
        value = user.outputs[0]
    return ""


class FuseQuantize(EpilogueRule):
    """``DequantizeLinear(QuantizeLinear(y, s, z), s, z)`` with one constant scale and zero point: a QDQ model's
    quantization of the layer's output (after its product, bias, residual or activation), computed in the kernel
    as ORT's two nodes compute it, so the quantized tensor is never written (the values the following nodes read
    are the DequantizeLinear's, bit for bit, given the same input)."""

    int8_exact = True  # a division, a rounding and a product, each rounded as ORT's nodes round them

    def pattern(self, op: OpsetPatternBuilder, s: Pattern, s2: Pattern) -> Pattern:
        q = op.QuantizeLinear(sparse_pattern(op), s, _allow_other_inputs=True, _allow_other_attributes=True)
        return op.DequantizeLinear(q, s2, _allow_other_inputs=True, _allow_other_attributes=True)

    def accept(self, kernel: Kernel, y: ir.Value, bindings: Bindings) -> str:
        if not self.fusion.quantize:
            return "this target's kernels do not fuse QuantizeLinear / DequantizeLinear"
        e = kernel.epilogue
        stage = e.last_stage()
        if e.quant_after(stage):
            return f"already quantized after the {stage}"
        quantize, dequantize = _pair_after(y)
        why = _pair(quantize, dequantize)[1]
        if why:
            return why
        chain = _requantized(dequantize.outputs[0])
        if chain:  # ORT would insert a QuantizeLinear after the kernel, and cannot type the value it makes for it
            return f"ORT's QDQ propagation would quantize the kernel's output again ({chain})"
        return ""

    def rewrite(self, op: RewriterContext, y: ir.Value, **_: ir.Value) -> ir.Value:
        e = sparse_producer(y)[1].epilogue
        stage = e.last_stage()
        made = _quant(stage, _pair_after(y)[0])
        return self.rebuild(op, y, f"quantize-dequantize after the {stage}", quant=(*e.quant, made))


class FuseQuantizedGelu(EpilogueRule):
    """A QDQ model's GELU (onnxruntime.quantization writes a QuantizeLinear -> DequantizeLinear pair after each of
    its nodes but the Div): ``Mul(DQ(Q(Mul(y, DQ(Q(Add(DQ(Q(Erf(Div(y, d)))), one)))))), half)``, with d, one and
    half single constants (or dequantized ones) near sqrt(2), 1 and 1/2. The kernel computes each node and pair as ORT
    does, except the erf (``erf_f32``: within 4.3e-7 of it, so an erf value at a rounding boundary of its quantizer
    can land one step off ORT's; verification allows such flips). The pair after the last Mul is an ordinary
    ``FuseQuantize`` after the activation."""

    def pattern(self, op: OpsetPatternBuilder, d: Pattern, one: Pattern, half: Pattern) -> Pattern:
        def qdq(v: Pattern) -> Pattern:
            q = op.QuantizeLinear(v, _allow_other_inputs=True, _allow_other_attributes=True)
            return op.DequantizeLinear(q, _allow_other_inputs=True, _allow_other_attributes=True)

        y = sparse_pattern(op)
        erf = qdq(op.Erf(op.Div(y, d)))
        return op.Mul(qdq(op.Mul(y, qdq(op.Add(erf, one)))), half)

    def inner(self, y: ir.Value) -> list[tuple[ir.Node, ir.Node]]:
        """The three QuantizeLinear / DequantizeLinear pairs, after the Erf, the Add and the Mul by y."""
        div = next(u.node for u in y.uses() if is_onnx(u.node, "Div"))
        erf = _next(div.outputs[0])
        pairs = [_pair_after(erf.outputs[0])]
        pairs.append(_pair_after(_next(pairs[-1][1].outputs[0]).outputs[0]))  # after the Add
        pairs.append(_pair_after(_next(pairs[-1][1].outputs[0]).outputs[0]))  # after the Mul by y
        return pairs

    def constants(self, bindings: Bindings) -> tuple[float, float, float] | None:
        values = [dequantized(bindings[k]) for k in ("d", "one", "half")]
        if any(v is None or v.size != 1 or v.dtype != np.float32 for v in values):
            return None
        d, one, half = (float(v.reshape(-1)[0]) for v in values if v is not None)
        return d, one, half

    def accept(self, kernel: Kernel, y: ir.Value, bindings: Bindings) -> str:
        if not self.fusion.quantize:
            return "this target's kernels do not fuse QuantizeLinear / DequantizeLinear"
        if kernel.epilogue.act != "none":
            return "nothing is fused after the activation"
        found = self.constants(bindings)
        if found is None or not all(
            math.isclose(v, ref, rel_tol=1e-2) for v, ref in zip(found, (math.sqrt(2.0), 1.0, 0.5), strict=True)
        ):
            return "an Erf pattern with quantized steps whose constants are not GELU's (sqrt(2), 1, 1/2)"
        return next((why for pair in self.inner(y) if (why := _pair(*pair)[1])), "")

    def rewrite(self, op: RewriterContext, y: ir.Value, **bindings: ir.Value) -> ir.Value:
        kernel = sparse_producer(y)[1]
        found = self.constants(bindings)
        assert found is not None
        made = (_quant(stage, quantize) for stage, (quantize, _) in zip(GELU_STAGES, self.inner(y), strict=True))
        quant = (*kernel.epilogue.quant, *made)
        return self.rebuild(op, y, "gelu (erf form, quantized steps)", act="gelu", gelu_constants=found, quant=quant)
