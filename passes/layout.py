"""Layout neighbours of a conv: the tensors ORT would convert between its NCHWc layout and NCHW around a sparse conv.

ORT runs the convs it keeps (here: grouped and depthwise ones) in its blocked NCHWc layout and keeps chains of them
and their activations in that layout. A sparsec conv reads and writes plain NCHW, so a sparse conv next to such a
conv costs ORT a ReorderOutput before it and a ReorderInput after it (measured on MobileNet-v1: 0.55 ms for 13
sparse pointwise convs, about 0.12 ns per element converted). ``reorder_elements`` counts those elements per image
so the cost model can charge them to the sparse choice.

Which convs ORT keeps depends on the selection: analysis counts only the grouped/depthwise ones (ORT's whatever the
weights); once formats are chosen, ``select`` recounts with every conv that stayed dense as ORT's too
(``kept_dense``), and a sparse conv whose conversions then make it lose goes back to dense.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import onnx_ir as ir

from sparsec.conv import ConvGeometry
from sparsec.layer import Layer

from .graph import attr, dims

PASS_THROUGH = ("Relu", "Clip", "Sigmoid", "HardSwish", "Mul", "Add")  # elementwise ops ORT keeps in NCHWc too
MAX_HOPS = 3


def _ort_conv(node: ir.Node | None, kept_dense: frozenset[str]) -> bool:
    """A Conv ORT runs: grouped or depthwise (whatever the weights), or one the selection kept dense."""
    if node is None or node.op_type != "Conv":
        return False
    return int(attr(node, "group", 1)) > 1 or node.outputs[0].name in kept_dense


def _upstream_is_ort_conv(value: ir.Value | None, kept_dense: frozenset[str]) -> bool:
    for _ in range(MAX_HOPS):
        node = value.producer() if value is not None else None
        if _ort_conv(node, kept_dense):
            return True
        if node is None or node.op_type not in PASS_THROUGH or not node.inputs:
            return False
        value = node.inputs[0]
    return False


def _downstream_is_ort_conv(value: ir.Value, kept_dense: frozenset[str]) -> bool:
    frontier = [value]
    for _ in range(MAX_HOPS):
        nxt: list[ir.Value] = []
        for v in frontier:
            for use in v.uses():
                if _ort_conv(use.node, kept_dense):
                    return True
                if use.node.op_type in PASS_THROUGH:
                    nxt.extend(use.node.outputs)
        frontier = nxt
    return False


def reorder_elements(
    node: ir.Node, kept_dense: frozenset[str] = frozenset(), sizes: tuple[int, int] | None = None
) -> int:
    """Elements per image ORT would reorder if ``node`` (a Conv) became a sparsec node, with the group-1 convs in
    ``kept_dense`` (named by their output value) also run by ORT. ``sizes`` (input, output elements per image) stand
    in for shapes that are not static (a conv sized at run time, counted at the size it is ranked at)."""
    total = 0
    x, y = node.inputs[0], node.outputs[0]
    for i, (value, near) in enumerate(((x, _upstream_is_ort_conv), (y, _downstream_is_ort_conv))):
        if value is None or not near(value, kept_dense):
            continue
        shape = dims(value)
        if shape and all(isinstance(d, int) for d in shape[1:]):
            total += math.prod(shape[1:])  # type: ignore[arg-type]
        elif sizes is not None:
            total += sizes[i]
    return total


def image_sizes(geom: ConvGeometry | None, n: int) -> tuple[int, int] | None:
    """(input, output) elements per image of a conv with ``n`` output channels sized at run time, at the size it is
    ranked at; None for any other layer (its shapes are static)."""
    return (geom.C * geom.H * geom.W, n * geom.P) if geom is not None and geom.dynamic else None


def settle_layout(layers: list[Layer], rechoose: Callable[[Layer], Layer]) -> list[Layer]:
    """Recount each sparse conv's NCHWc conversions with the convs that stayed dense as ORT's too (passes/layout.py)
    and choose it again; a conv that goes back to dense adds conversions to its neighbours, so repeat until nothing
    changes (the sparse set only shrinks: at most one round per conv)."""
    by_name = {la.name: la for la in layers}
    convs = [la.name for la in layers if la.op == "Conv" and la.geom is not None and not la.skip]
    for _ in range(len(convs)):
        kept_dense = frozenset(str(by_name[c].node.outputs[0].name) for c in convs if by_name[c].format == "dense")
        changed = False
        for c in convs:
            la = by_name[c]
            if la.format == "dense":
                continue
            shape = dims(la.node.inputs[0]) or [None]
            batch = shape[0] if isinstance(shape[0], int) else 1
            reorder = batch * reorder_elements(la.node, kept_dense, image_sizes(la.geom, la.n))
            if reorder == la.reorder:
                continue
            la = by_name[c] = rechoose(replace(la, reorder=reorder))
            changed = changed or la.format == "dense"
        if not changed:
            break
    return [by_name[la.name] for la in layers]
