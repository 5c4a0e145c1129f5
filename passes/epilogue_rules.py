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
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchContext, MatchResult, RewriterContext, RewriteRuleClassBase, RewriteRuleSet
from onnxscript.rewriter.pattern import OpsetPatternBuilder

from sparsec import node as sparse_node
from sparsec.formats import family
from sparsec.layer import GELU_STAGES, Epilogue, Kernel, Quant

from .graph import attr, clip_bounds, constant, dequantized, dims, is_float, is_onnx

EPILOGUE_NOTE = " + epilogue: "
INT8_INEXACT = (
    "kept on ONNX Runtime after an int8 layer: rounded another way (ORT fuses a residual into SkipLayerNormalization, "
    "its GELU differs by ulps), the next quantizer would turn that into whole steps"
)


@dataclass
class Fusion:
    """What the rules share with the pass applying them: the sparsec node being grown, the step the last rewrite
    added, and per layer and following node why that node was not fused."""

    focus: ir.Node | None = None
    step: str = ""
    quantize: bool = False  # the target's kernels compute fused QuantizeLinear -> DequantizeLinear pairs
    float_layers: frozenset[str] = frozenset()  # int8 kernels of QDQ MatMuls: float layers, not held to ORT's bits
    notes: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def note(self, layer: str, where: str, why: str) -> None:
        seen = self.notes.setdefault(layer, {}).setdefault(where, [])
        if why not in seen:
            seen.append(why)

    def fused(self, layer: str, where: str) -> None:
        """A rule fused the node at ``where``: earlier rules' reasons about it no longer apply."""
        self.notes.get(layer, {}).pop(where, None)

    def unfused(self, layer: str) -> list[str]:
        return [f"{where}: {'; '.join(why)}" for where, why in self.notes.get(layer, {}).items()]


def where(node: ir.Node) -> str:
    """How reports name a node that follows a sparse layer."""
    return f"{node.op_type} {node.name!r}" if node.name else f"{node.op_type} -> {node.outputs[0].name!r}"


def _after(e: Epilogue) -> str:
    return (
        "nothing is fused after the activation" if e.act != "none" else "after the residual only an activation is fused"
    )


def _scalar(value: ir.Value | None, expected: float) -> bool:
    c = constant(value)
    return c is not None and c.size == 1 and math.isclose(float(c.reshape(-1)[0]), expected, rel_tol=1e-5)


def _producer(y: ir.Value) -> tuple[ir.Node, Kernel]:
    """The sparsec node a matched ``y`` comes from, and its kernel (``check`` made sure there is one)."""
    node = y.producer()
    assert node is not None
    kernel = sparse_node.read(node)
    assert kernel is not None
    return node, kernel


Pattern = Any  # a value of an onnxscript pattern (the pattern builder's ops are dynamic attributes)
Bindings = dict[str, Any]  # the values a match bound, by pattern variable name ("y": the sparsec node's output)


def _sparse(op: OpsetPatternBuilder) -> Pattern:
    """The pattern of a sparsec node (any inputs and attributes); its output binds as ``y``."""
    return op.EPContext(
        _domain=sparse_node.DOMAIN, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["y"]
    )


class EpilogueRule(RewriteRuleClassBase):
    """A rule growing the sparsec node that ``y`` comes from; subclasses write ``pattern``, ``accept`` (why not:
    the check's reason) and ``rewrite``."""

    # Whether the kernel computes this step with the rounding ORT gives it after an int8 layer (its Mul by the scale,
    # then Add of the bias: the fused DynamicQuantizeMatMul rounds them apart too).
    int8_exact = False

    def __init__(self, fusion: Fusion) -> None:
        super().__init__()
        self.fusion = fusion

    def check(self, op: Any, *args: Any, **bindings: Any) -> MatchResult:
        context: MatchContext = op  # the rewriter passes the match context first (PatternBase names it ``op``)
        result = MatchResult()
        y: ir.Value = bindings["y"]
        node = y.producer()
        kernel = sparse_node.read(node) if node is not None else None
        if node is None or node is not self.fusion.focus or kernel is None:
            return result.fail("not the sparsec node being grown")
        why = self.accept(kernel, y, bindings)
        exact = sparse_node.layer_name(node) not in self.fusion.float_layers  # ORT's int8 bits are the reference
        if not why and family(kernel.format) == "int8" and not self.int8_exact and exact:
            why = INT8_INEXACT
        if why:
            self.fusion.note(sparse_node.layer_name(node), where(context.root), why)
            return result.fail(why)
        return result

    def accept(self, kernel: Kernel, y: ir.Value, bindings: Bindings) -> str:
        """Why this match cannot join the kernel's epilogue ("" when it can)."""
        return ""

    def rebuild(
        self,
        op: RewriterContext,
        y: ir.Value,
        step: str,
        *,
        scale_value: ir.Value | None = None,
        bias_value: ir.Value | None = None,
        residual_value: ir.Value | None = None,
        **changes: Any,
    ) -> ir.Value:
        """The sparsec node of ``y`` with its epilogue grown by ``changes`` (and a new bias or residual input)."""
        node, kernel = _producer(y)
        e = kernel.epilogue
        n_arrays = len(node.inputs) - 1 - int(e.scale > 0) - int(e.bias) - int(e.residual)
        base = list(node.inputs[: 1 + n_arrays])
        old_scale = node.inputs[1 + n_arrays] if e.scale else None
        old_bias = node.inputs[1 + n_arrays + int(e.scale > 0)] if e.bias else None
        old_residual = node.inputs[-1] if e.residual else None
        grown = replace(kernel, epilogue=replace(e, **changes))
        g = grown.epilogue
        scale = scale_value or old_scale
        bias = bias_value or old_bias
        residual = residual_value or old_residual
        inputs = base + ([scale] if g.scale else []) + ([bias] if g.bias else []) + ([residual] if g.residual else [])
        notes = str(attr(node, "notes", ""))
        head, sep, done = notes.partition(EPILOGUE_NOTE)
        notes = head + EPILOGUE_NOTE + (f"{done}, {step}" if sep else step)
        self.fusion.step = step
        attrs = sparse_node.attributes(grown, sparse_node.layer_name(node), notes)
        grown_node = op.call_op("EPContext", inputs, attrs, domain=sparse_node.DOMAIN, name=node.name)
        assert isinstance(grown_node, ir.Value)
        return grown_node


class FuseScale(EpilogueRule):
    """``Mul(y, s)`` after an int8 kernel: the dequantization scale (``x_scale * w_scale``, computed at run time by
    ``onnxruntime.quantization``'s dynamic graphs) as one value or one per output feature, before anything else."""

    int8_exact = True

    def pattern(self, op: OpsetPatternBuilder, s: Pattern) -> Pattern:
        return op.Mul(_sparse(op), s)

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
        _, kernel = _producer(y)
        return self.rebuild(op, y, "scale", scale_value=s, scale=self.count(kernel, y, s))


class FuseBias(EpilogueRule):
    """``Add(y, c)`` with a constant c giving one value per output feature (a scalar; [.., N]; conv: [.., N, 1, 1])."""

    int8_exact = True

    def pattern(self, op: OpsetPatternBuilder, c: Pattern) -> Pattern:
        return op.Add(_sparse(op), c)

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
            return _after(e)
        if c is y:
            return "adds the layer's output to itself"
        if self.per_feature(kernel, y, c) is None:
            return "not a constant with one value per output feature (not a bias)"
        if e.quant_after("bias"):
            return "the bias is already quantized: another bias would join it before the quantization"
        return ""

    def rewrite(self, op: RewriterContext, y: ir.Value, c: ir.Value) -> ir.Value:
        node, kernel = _producer(y)
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


@dataclass(frozen=True)
class _Quantizer:
    """A QuantizeLinear's (or DequantizeLinear's) scale, zero point and the integer type's range."""

    scale: np.float32
    zero_point: int
    lo: int
    hi: int


def _quantizer(node: ir.Node) -> tuple[_Quantizer | None, str]:
    """The constant per-tensor scale and zero point of a QuantizeLinear / DequantizeLinear, or (None, why not)."""
    scale = constant(node.inputs[1] if len(node.inputs) > 1 else None)
    zp_value = node.inputs[2] if len(node.inputs) > 2 else None
    zp = np.zeros((), np.uint8) if zp_value is None else constant(zp_value)
    if scale is None or zp is None or scale.size != 1 or zp.size != 1:
        return None, f"{node.op_type}'s scale and zero point are not single constants (per tensor)"
    if scale.dtype != np.float32 or zp.dtype not in (np.int8, np.uint8, np.int16, np.uint16):
        return (
            None,
            f"{node.op_type} with a {scale.dtype} scale and a {zp.dtype} zero point (float32 and 8/16-bit fused)",
        )
    if int(attr(node, "block_size", 0)):
        return None, f"blocked {node.op_type}"
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
        q = op.QuantizeLinear(_sparse(op), s, _allow_other_inputs=True, _allow_other_attributes=True)
        return op.DequantizeLinear(q, s2, _allow_other_inputs=True, _allow_other_attributes=True)

    def nodes(self, y: ir.Value) -> tuple[ir.Node, ir.Node]:
        """The QuantizeLinear and DequantizeLinear the match made y's only consumers."""
        quantize = next(iter(y.uses())).node
        return quantize, next(iter(quantize.outputs[0].uses())).node

    def accept(self, kernel: Kernel, y: ir.Value, bindings: Bindings) -> str:
        if not self.fusion.quantize:
            return "this target's kernels do not fuse QuantizeLinear / DequantizeLinear"
        e = kernel.epilogue
        stage = e.last_stage()
        if e.quant_after(stage):
            return f"already quantized after the {stage}"
        quantize, dequantize = self.nodes(y)
        why = _pair(quantize, dequantize)[1]
        if why:
            return why
        chain = _requantized(dequantize.outputs[0])
        if chain:  # ORT would insert a QuantizeLinear after the kernel, and cannot type the value it makes for it
            return f"ORT's QDQ propagation would quantize the kernel's output again ({chain})"
        return ""

    def rewrite(self, op: RewriterContext, y: ir.Value, **_: ir.Value) -> ir.Value:
        kernel = _producer(y)[1]
        e = kernel.epilogue
        q = _quantizer(self.nodes(y)[0])[0]
        assert q is not None
        stage = e.last_stage()
        made = Quant(stage, float(q.scale), q.zero_point, q.lo, q.hi)
        return self.rebuild(op, y, f"quantize-dequantize after the {stage}", quant=(*e.quant, made))


def _next(value: ir.Value) -> ir.Node:
    """The only consumer of a value the match made single-consumer."""
    return next(iter(value.uses())).node


def _pairs_after(node: ir.Node) -> tuple[ir.Node, ir.Node]:
    """The QuantizeLinear and DequantizeLinear the match put after ``node``."""
    quantize = _next(node.outputs[0])
    return quantize, _next(quantize.outputs[0])


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

        y = _sparse(op)
        erf = qdq(op.Erf(op.Div(y, d)))
        return op.Mul(qdq(op.Mul(y, qdq(op.Add(erf, one)))), half)

    def inner(self, y: ir.Value) -> list[tuple[ir.Node, ir.Node]]:
        """The three QuantizeLinear / DequantizeLinear pairs, after the Erf, the Add and the Mul by y."""
        div = next(u.node for u in y.uses() if is_onnx(u.node, "Div"))
        erf = _next(div.outputs[0])
        pairs = [_pairs_after(erf)]
        pairs.append(_pairs_after(_next(pairs[-1][1].outputs[0])))  # after the Add
        pairs.append(_pairs_after(_next(pairs[-1][1].outputs[0])))  # after the Mul by y
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
        kernel = _producer(y)[1]
        found = self.constants(bindings)
        assert found is not None
        made = []
        for stage, (quantize, _) in zip(GELU_STAGES, self.inner(y), strict=True):
            q = _quantizer(quantize)[0]
            assert q is not None
            made.append(Quant(stage, float(q.scale), q.zero_point, q.lo, q.hi))
        quant = (*kernel.epilogue.quant, *made)
        return self.rebuild(op, y, "gelu (erf form, quantized steps)", act="gelu", gelu_constants=found, quant=quant)


class FuseResidual(EpilogueRule):
    """``Add(y, r)`` with a float32 tensor r of exactly Y's (known) shape."""

    def pattern(self, op: OpsetPatternBuilder, r: Pattern) -> Pattern:
        return op.Add(_sparse(op), r)

    def accept(self, kernel: Kernel, y: ir.Value, bindings: Bindings) -> str:
        r = bindings["r"]
        e = kernel.epilogue
        if e.act != "none" or e.residual:
            return _after(e)
        if r is y or constant(r) is not None:
            return "not a residual (a constant, or the layer's own output)"
        ys, rs = dims(y), dims(r)
        if ys is None or rs != ys or any(d is None for d in ys) or not is_float(r):
            return f"not a residual: shape {rs} against the layer's {ys} (must be equal and known, float32)"
        return ""

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
        return build(_sparse(op), _domain=self.domain, _allow_other_inputs=True, _allow_other_attributes=True)

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
        y = _sparse(op)
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
        y = _sparse(op)
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
        if not (_scalar(s, scale) and _scalar(one, 1.0) and _scalar(half, 0.5)):
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
