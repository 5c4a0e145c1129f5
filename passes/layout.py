"""Layout neighbours of a conv: the tensors ORT would convert between its NCHWc layout and NCHW around a sparse conv.

ORT runs the convs it keeps (here: grouped and depthwise ones) in its blocked NCHWc layout and keeps chains of them
and their activations in that layout. A sparsec conv reads and writes plain NCHW, so a sparse conv next to such a
conv costs ORT a ReorderOutput before it and a ReorderInput after it (measured on MobileNet-v1: 0.55 ms for 13
sparse pointwise convs, about 0.12 ns per element converted). ``reorder_elements`` counts those elements per image
so the cost model can charge them to the sparse choice.

Which convs ORT keeps depends on the selection: analysis counts only the grouped/depthwise ones (ORT's whatever the
weights); once formats are chosen, ``settle`` (sparsec/pipeline.py) recounts with every conv that stayed dense as
ORT's too (``kept_dense``), and a sparse conv whose conversions then make it lose goes back to dense.
"""

from __future__ import annotations

import numpy as np
import onnx

from .graph import GraphIndex, attr

PASS_THROUGH = ("Relu", "Clip", "Sigmoid", "HardSwish", "Mul", "Add")  # elementwise ops ORT keeps in NCHWc too
MAX_HOPS = 3


def _ort_conv(node: onnx.NodeProto | None, kept_dense: frozenset[str]) -> bool:
    """A Conv ORT runs: grouped or depthwise (whatever the weights), or one the selection kept dense."""
    if node is None or node.op_type != "Conv":
        return False
    return int(attr(node, "group", 1)) > 1 or node.output[0] in kept_dense  # type: ignore[arg-type]


def _upstream_is_ort_conv(idx: GraphIndex, value: str, kept_dense: frozenset[str]) -> bool:
    for _ in range(MAX_HOPS):
        node = idx.producer.get(value)
        if _ort_conv(node, kept_dense):
            return True
        if node is None or node.op_type not in PASS_THROUGH or not node.input:
            return False
        value = node.input[0]
    return False


def _downstream_is_ort_conv(idx: GraphIndex, value: str, kept_dense: frozenset[str]) -> bool:
    frontier = [value]
    for _ in range(MAX_HOPS):
        nxt = []
        for v in frontier:
            for user in idx.consumers.get(v, []):
                if _ort_conv(user, kept_dense):
                    return True
                if user.op_type in PASS_THROUGH:
                    nxt.extend(user.output)
        frontier = nxt
    return False


def reorder_elements(idx: GraphIndex, node: onnx.NodeProto, kept_dense: frozenset[str] = frozenset()) -> int:
    """Elements per image ORT would reorder if ``node`` (a Conv with static shapes) became a sparsec node, with the
    group-1 convs in ``kept_dense`` (named by their output value) also run by ORT."""
    total = 0
    for value, near in ((node.input[0], _upstream_is_ort_conv), (node.output[0], _downstream_is_ort_conv)):
        shape = idx.shapes.get(value)
        if shape and all(isinstance(d, int) for d in shape[1:]) and near(idx, value, kept_dense):
            total += int(np.prod(shape[1:]))  # type: ignore[arg-type]
    return total
