"""layout: a conv next to a conv ORT keeps (depthwise/grouped, NCHWc) is charged ORT's layout conversions."""

from __future__ import annotations

import numpy as np
from onnx import helper

from sparsec.passes.analysis import find_layers
from tests.conv_graphs import conv_weight
from tests.passes.graphs import model

C, S = 8, 6


def test_reorder_counted_only_next_to_ort_convs() -> None:
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "dw1"], ["d1"], name="dw1", group=C, pads=[1] * 4),
        helper.make_node("Relu", ["d1"], ["r1"]),
        helper.make_node("Conv", ["r1", "pw1"], ["p1"], name="pw1"),  # after a depthwise (through Relu): input side
        helper.make_node("Clip", ["p1"], ["c1"]),
        helper.make_node("Conv", ["c1", "dw2"], ["d2"], name="dw2", group=C, pads=[1] * 4),  # output side too
        helper.make_node("Conv", ["d2", "pw2"], ["p2"], name="pw2"),  # input side only
        helper.make_node("Conv", ["p2", "pw3"], ["y"], name="pw3"),  # between two pointwise: nothing
    ]
    inits = {
        "dw1": conv_weight(rng, C, 1, 3, 1.0),
        "dw2": conv_weight(rng, C, 1, 3, 1.0),
        "pw1": conv_weight(rng, C, C, 1, 0.2),
        "pw2": conv_weight(rng, C, C, 1, 0.2),
        "pw3": conv_weight(rng, C, C, 1, 0.2),
    }
    m = model(nodes, inits, {"x": [2, C, S, S]}, {"y": [2, C, S, S]})
    reorder = {la.name: la.reorder for la in find_layers(m)}
    image = 2 * C * S * S  # batch 2
    assert reorder == {"dw1": 0, "pw1": 2 * image, "dw2": 0, "pw2": image, "pw3": 0}
