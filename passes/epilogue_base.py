"""What every epilogue rule shares (passes/epilogue_rules.py, passes/epilogue_quantize.py): the fusion state, the
sparsec-node pattern and the rule base class, whose ``rebuild`` grows the sparsec node by one step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import onnx_ir as ir
from onnxscript.rewriter import MatchContext, MatchResult, RewriterContext, RewriteRuleClassBase
from onnxscript.rewriter.pattern import OpsetPatternBuilder

from sparsec import node as sparse_node
from sparsec.formats import family
from sparsec.layer import Epilogue, Kernel

from .graph import attr, constant, dims, is_float

EPILOGUE_NOTE = " + epilogue: "
INT8_INEXACT = (
    "kept on ONNX Runtime after an int8 layer: rounded another way (ORT fuses a residual into SkipLayerNormalization, "
    "its GELU differs by ulps), the next quantizer would turn that into whole steps"
)


def residual_problem(y: ir.Value, r: ir.Value | None) -> str:
    """Why ``Add(y, r)`` is not a residual a kernel can take in ("" when it is): r must be a float32 tensor of
    exactly y's known shape (the kernel reads it as [M, N]; the EP checks the shapes again at run time)."""
    if r is None or r is y or constant(r) is not None:
        return "not a residual (a constant, or the layer's own output)"
    ys, rs = dims(y), dims(r)
    if ys is None or rs != ys or any(d is None for d in ys) or not is_float(r):
        return f"not a residual: shape {rs} against the layer's {ys} (must be equal and known, float32)"
    return ""


@dataclass
class Fusion:
    """What the rules share with the pass applying them: the sparsec node being grown, the step the last rewrite
    added, and per layer and following node why that node was not fused."""

    focus: ir.Node | None = None
    step: str = ""
    quantize: bool = False  # the target's kernels compute fused QuantizeLinear -> DequantizeLinear pairs
    float_layers: frozenset[str] = frozenset()  # int8 kernels of QDQ MatMuls: float layers, not held to ORT's bits
    # The target's other ops run on another ORT build (Target.foreign_ort: arm, wasm), whose own rounding a later
    # quantizer already makes whole steps, so verification checks each layer on ORT's inputs: there no int8 kernel
    # is held to ORT's bits, and they take GELU and residuals in too (within 1e-4 of ORT's, as the float kernels)
    held_to_ort: bool = True
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


def after_note(e: Epilogue) -> str:
    return (
        "nothing is fused after the activation" if e.act != "none" else "after the residual only an activation is fused"
    )


def sparse_producer(y: ir.Value) -> tuple[ir.Node, Kernel]:
    """The sparsec node a matched ``y`` comes from, and its kernel (``check`` made sure there is one)."""
    node = y.producer()
    assert node is not None
    kernel = sparse_node.read(node)
    assert kernel is not None
    return node, kernel


Pattern = Any  # a value of an onnxscript pattern (the pattern builder's ops are dynamic attributes)
Bindings = dict[str, Any]  # the values a match bound, by pattern variable name ("y": the sparsec node's output)


def sparse_pattern(op: OpsetPatternBuilder) -> Pattern:
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
        # ORT's int8 bits are the reference
        exact = self.fusion.held_to_ort and sparse_node.layer_name(node) not in self.fusion.float_layers
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
        node, kernel = sparse_producer(y)
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
