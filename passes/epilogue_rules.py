"""Epilogue fusion as onnxscript rewrite rules: what may follow a sparsec node and become part of its kernel.

Each rule is a pattern ending in the sparsec node's output, a ``check`` that returns ``fail(reason)`` (the reasons
reach ``sparsec inspect``), and a rewrite that returns the grown sparsec node. Commuted operands of Add and Mul are
the rewriter's (``RewriteRuleSet(commute=True)``). The order of an epilogue is bias Adds (summed), then one
residual Add, then one activation; nothing is fused after the activation. An int8 kernel first takes its
dequantization scale (a Mul by a run-time value). On targets that compute them, a QDQ model's QuantizeLinear ->
DequantizeLinear pair may follow the product, the bias, the residual and the activation (one each), and a QDQ GELU
brings its own three. ``passes/fuse.py`` applies the rules.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import RewriterContext, RewriteRuleSet
from onnxscript.rewriter.pattern import OpsetPatternBuilder

from sparsec import node as sparse_node
from sparsec.formats import family
from sparsec.layer import Kernel

from .epilogue_base import (
    EPILOGUE_NOTE,
    INT8_INEXACT,
    Bindings,
    EpilogueRule,
    Fusion,
    Pattern,
    after_note,
    residual_problem,
    sparse_pattern,
    sparse_producer,
    where,
)
from .epilogue_quantize import FuseQuantize, FuseQuantizedGelu
from .graph import attr, clip_bounds, dequantized, dims, is_float, is_scalar

__all__ = ["EPILOGUE_NOTE", "INT8_INEXACT", "Fusion", "rules", "where"]


class FuseScale(EpilogueRule):
    """``Mul(y, s)`` after an int8 kernel: the dequantization scale (``x_scale * w_scale``, computed at run time by
    ``onnxruntime.quantization``'s dynamic graphs) as one value or one per output feature, before anything else."""

    int8_exact = True

    def pattern(self, op: OpsetPatternBuilder, s: Pattern) -> Pattern:
        return op.Mul(sparse_pattern(op), s)

    def count(self, kernel: Kernel, y: ir.Value, s: ir.Value) -> int:
        """How many scale values ``s`` holds (1, or N per output feature), 0 when it is not such a scale."""
        s_dims, y_dims = dims(s), dims(y)
        if s is y or not is_float(s) or s_dims is None or y_dims is None or len(s_dims) > len(y_dims):
            return 0
        if all(d == 1 for d in s_dims):
            return 1
        return kernel.N if s_dims[-1] == kernel.N and all(d == 1 for d in s_dims[:-1]) else 0

    def accept(self, kernel: Kernel, y: ir.Value, bindings: Bindings) -> str:
        if family(kernel.format) != "int8":
            return "a Mul is fused into int8 kernels only (as their dequantization scale)"
        e = kernel.epilogue
        if e.scale or e.bias or e.residual or e.act != "none" or e.quant:
            return "the scale comes first in an int8 kernel's epilogue"
        if not self.count(kernel, y, bindings["s"]):
            return f"not a float32 scale of known shape with 1 or N={kernel.N} values"
        return ""

    def rewrite(self, op: RewriterContext, y: ir.Value, s: ir.Value) -> ir.Value:
        _, kernel = sparse_producer(y)
        return self.rebuild(op, y, "scale", scale_value=s, scale=self.count(kernel, y, s))


class FuseBias(EpilogueRule):
    """``Add(y, c)`` with a constant c giving one value per output feature (a scalar; [.., N]; conv: [.., N, 1, 1])."""

    int8_exact = True

    def pattern(self, op: OpsetPatternBuilder, c: Pattern) -> Pattern:
        return op.Add(sparse_pattern(op), c)

    def per_feature(self, kernel: Kernel, y: ir.Value, c: ir.Value) -> np.ndarray | None:
        value = dequantized(c)  # a QDQ model's bias is an int8 / int32 constant behind DequantizeLinear
        node = y.producer()
        y_dims = dims(node.inputs[0]) if node is not None else None
        if value is None or value.dtype != np.float32 or y_dims is None or value.ndim > len(y_dims):
            return None
        n = kernel.N
        if value.size == 1:
            return np.full(n, float(value.reshape(-1)[0]), np.float32)
        conv = kernel.conv is not None
        channel = value.ndim >= 3 and value.shape[-3:] == (n, 1, 1) if conv else value.shape[-1] == n
        return value.reshape(n).astype(np.float32) if channel and value.size == n else None

    def accept(self, kernel: Kernel, y: ir.Value, bindings: Bindings) -> str:
        c = bindings["c"]
        e = kernel.epilogue
        if e.act != "none" or e.residual:
            return after_note(e)
        if c is y:
            return "adds the layer's output to itself"
        if self.per_feature(kernel, y, c) is None:
            return "not a constant with one value per output feature (not a bias)"
        if e.quant_after("bias"):
            return "the bias is already quantized: another bias would join it before the quantization"
        return ""

    def rewrite(self, op: RewriterContext, y: ir.Value, c: ir.Value) -> ir.Value:
        node, kernel = sparse_producer(y)
        value = self.per_feature(kernel, y, c)
        assert value is not None
        layer = sparse_node.layer_name(node)
        graph = y.graph
        assert graph is not None
        if kernel.epilogue.bias:
            old = node.inputs[len(node.inputs) - 1]
            assert old is not None and old.const_value is not None
            value = old.const_value.numpy() + value
            name = str(old.name)
        else:
            name = f"{layer}__bias"
            while name in graph.initializers:
                name += "_"
        bias = op.initializer(ir.tensor(value.astype(np.float32), name=name), name=name)
        return self.rebuild(op, y, "bias", bias_value=bias, bias=True)


class FuseResidual(EpilogueRule):
    """``Add(y, r)`` with a float32 tensor r of exactly Y's (known) shape."""

    def pattern(self, op: OpsetPatternBuilder, r: Pattern) -> Pattern:
        return op.Add(sparse_pattern(op), r)

    def accept(self, kernel: Kernel, y: ir.Value, bindings: Bindings) -> str:
        e = kernel.epilogue
        if e.act != "none" or e.residual:
            return after_note(e)
        return residual_problem(y, bindings["r"])

    def rewrite(self, op: RewriterContext, y: ir.Value, r: ir.Value) -> ir.Value:
        return self.rebuild(op, y, "residual", residual_value=r, residual=True)


class FuseActivation(EpilogueRule):
    """One activation op reading y: Relu, Sigmoid, HardSwish, Clip with constant bounds, Gelu (exact)."""

    def __init__(self, fusion: Fusion, op_type: str, domain: str = "") -> None:
        super().__init__(fusion)
        self.op_type, self.domain = op_type, domain
        self.name = f"Fuse{op_type}{'_' + domain if domain else ''}"
        self.int8_exact = op_type in ("Relu", "Clip")  # a max / min: the same bits wherever it is applied

    def pattern(self, op: OpsetPatternBuilder) -> Pattern:
        build = getattr(op, self.op_type)  # the pattern builder's op constructors are its attributes
        return build(sparse_pattern(op), _domain=self.domain, _allow_other_inputs=True, _allow_other_attributes=True)

    def act_node(self, y: ir.Value) -> ir.Node:
        return next(iter(y.uses())).node  # the match made it y's only consumer

    def accept(self, kernel: Kernel, y: ir.Value, bindings: Bindings) -> str:
        if kernel.epilogue.act != "none":
            return "nothing is fused after the activation"
        node = self.act_node(y)
        if self.op_type == "Clip" and clip_bounds(node) is None:
            return "its bounds are not constants"
        if self.op_type != "Clip" and len(node.inputs) > 1:
            return "unexpected extra inputs"
        if self.op_type == "Gelu" and attr(node, "approximate", "none") != "none":
            return "tanh-approximate GELU (sparsec fuses the exact one)"
        return ""

    def rewrite(self, op: RewriterContext, y: ir.Value) -> ir.Value:
        node = self.act_node(y)
        if self.op_type == "Clip":
            bounds = clip_bounds(node)
            assert bounds is not None
            return self.rebuild(op, y, "clip", act="clip", clip_min=bounds[0], clip_max=bounds[1])
        act = self.op_type.lower()
        return self.rebuild(op, y, act, act=act)


class FuseGatedSelf(EpilogueRule):
    """``y * Sigmoid(y)`` (SiLU / Swish as exported) or ``y * HardSigmoid(y, 1/6, 1/2)`` (HardSwish in older
    exports)."""

    def __init__(self, fusion: Fusion, gate: str) -> None:
        super().__init__(fusion)
        self.gate = gate
        self.name = f"Fuse{gate}Gate"

    def pattern(self, op: OpsetPatternBuilder) -> Pattern:
        y = sparse_pattern(op)
        return op.Mul(y, getattr(op, self.gate)(y, _allow_other_attributes=True))

    def accept(self, kernel: Kernel, y: ir.Value, bindings: Bindings) -> str:
        if kernel.epilogue.act != "none":
            return "nothing is fused after the activation"
        if self.gate == "HardSigmoid":
            gate = next(u.node for u in y.uses() if u.node.op_type == "HardSigmoid")
            if not (
                math.isclose(float(attr(gate, "alpha", 0.2)), 1 / 6, rel_tol=1e-5)
                and math.isclose(float(attr(gate, "beta", 0.5)), 0.5, rel_tol=1e-5)
            ):
                return "HardSigmoid's alpha/beta are not HardSwish's (1/6, 1/2)"
        return ""

    def rewrite(self, op: RewriterContext, y: ir.Value) -> ir.Value:
        act = "silu" if self.gate == "Sigmoid" else "hardswish"
        return self.rebuild(op, y, f"{act} (x * {self.gate.lower()}(x))", act=act)


class FuseErfGelu(EpilogueRule):
    """``0.5 * y * (1 + erf(y / sqrt 2))`` as PyTorch exports it: the 0.5 applied last (``form="last"``), first
    (``"first"``) or to the erf term (``"inner"``); the 1/sqrt 2 as a Div or a Mul (``divide``)."""

    def __init__(self, fusion: Fusion, form: str, divide: bool) -> None:
        super().__init__(fusion)
        self.form, self.divide = form, divide
        self.name = f"FuseErfGelu_{form}_{'div' if divide else 'mul'}"

    def pattern(self, op: OpsetPatternBuilder, s: Pattern, one: Pattern, half: Pattern) -> Pattern:
        y = sparse_pattern(op)
        scaled = op.Div(y, s) if self.divide else op.Mul(y, s)
        a = op.Add(op.Erf(scaled), one)
        if self.form == "last":  # (y * a) * 0.5
            return op.Mul(op.Mul(y, a), half)
        if self.form == "first":  # (y * 0.5) * a
            return op.Mul(op.Mul(y, half), a)
        return op.Mul(y, op.Mul(a, half))  # y * (a * 0.5)

    def accept(self, kernel: Kernel, y: ir.Value, bindings: Bindings) -> str:
        s, one, half = bindings["s"], bindings["one"], bindings["half"]
        if kernel.epilogue.act != "none":
            return "nothing is fused after the activation"
        scale = math.sqrt(2.0) if self.divide else 1 / math.sqrt(2.0)
        if not (is_scalar(s, scale) and is_scalar(one, 1.0) and is_scalar(half, 0.5)):
            return "an Erf pattern whose constants are not GELU's"
        return ""

    def rewrite(self, op: RewriterContext, y: ir.Value, **_: ir.Value) -> ir.Value:
        return self.rebuild(op, y, "gelu (erf form)", act="gelu")


def rules(fusion: Fusion) -> RewriteRuleSet:
    """Every epilogue rule, in the order they are tried, with commuted Add/Mul operands."""
    return RewriteRuleSet(
        [
            FuseScale.rule(fusion),
            FuseBias.rule(fusion),
            FuseResidual.rule(fusion),
            FuseQuantize.rule(fusion),
            FuseQuantizedGelu.rule(fusion),
            *(
                FuseErfGelu.rule(fusion, form, divide)
                for form in ("last", "first", "inner")
                for divide in (True, False)
            ),
            FuseGatedSelf.rule(fusion, "Sigmoid"),
            FuseGatedSelf.rule(fusion, "HardSigmoid"),
            *(FuseActivation.rule(fusion, op) for op in ("Relu", "Sigmoid", "HardSwish", "Clip", "Gelu")),
            FuseActivation.rule(fusion, "Gelu", sparse_node.DOMAIN),
        ],
        commute=True,
    )
