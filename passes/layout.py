"""Layout neighbours of a conv: the tensors ORT would convert between its NCHWc layout and NCHW around a sparse conv.

ORT runs the convs it keeps (here: grouped and depthwise ones) in its blocked NCHWc layout and keeps chains of them
and their activations in that layout. A sparsec conv reads and writes plain NCHW, so a sparse conv next to such a
conv costs ORT a ReorderOutput before it and a ReorderInput after it (measured on MobileNet-v1: 0.55 ms for 13
sparse pointwise convs, about 0.12 ns per element converted). ``reorder_elements`` counts those elements per image
so the cost model can charge them to the sparse choice.
"""

from __future__ import annotations

import numpy as np
import onnx

from .graph import GraphIndex, attr

PASS_THROUGH = ("Relu", "Clip", "Sigmoid", "HardSwish", "Mul", "Add")  # elementwise ops ORT keeps in NCHWc too
MAX_HOPS = 3


def _ort_conv(node: onnx.NodeProto | None) -> bool:
    """A Conv sparsec leaves to ORT whatever the weights: grouped or depthwise."""
    return node is not None and node.op_type == "Conv" and int(attr(node, "group", 1)) > 1  # type: ignore[arg-type]


def _upstream_is_ort_conv(idx: GraphIndex, value: str) -> bool:
    for _ in range(MAX_HOPS):
        node = idx.producer.get(value)
        if _ort_conv(node):
            return True
        if node is None or node.op_type not in PASS_THROUGH or not node.input:
            return False
        value = node.input[0]
    return False


def _downstream_is_ort_conv(idx: GraphIndex, value: str) -> bool:
    frontier = [value]
    for _ in range(MAX_HOPS):
        nxt = []
        for v in frontier:
            for user in idx.consumers.get(v, []):
                if _ort_conv(user):
                    return True
                if user.op_type in PASS_THROUGH:
                    nxt.extend(user.output)
        frontier = nxt
    return False


def reorder_elements(idx: GraphIndex, node: onnx.NodeProto) -> int:
    """Elements per image ORT would reorder if ``node`` (a Conv with static shapes) became a sparsec node."""
    total = 0
    for value, near in ((node.input[0], _upstream_is_ort_conv), (node.output[0], _downstream_is_ort_conv)):
        shape = idx.shapes.get(value)
        if shape and all(isinstance(d, int) for d in shape[1:]) and near(idx, value):
            total += int(np.prod(shape[1:]))  # type: ignore[arg-type]
    return total
