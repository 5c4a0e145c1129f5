"""layout: a conv next to a conv ORT keeps (depthwise/grouped, or kept dense by the selection) is charged ORT's
layout conversions; the pipeline recounts after choosing and re-chooses until stable."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import onnx_ir as ir
from onnx import helper

from sparsec.layer import Choice, Layer
from sparsec.passes import analysis
from tests.conv_graphs import conv_weight
from tests.passes.graphs import model


def find_layers(m: onnx.ModelProto) -> list[Layer]:
    return analysis.find_layers(ir.from_proto(m).graph)


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


def _chain() -> tuple[onnx.ModelProto, list[Layer]]:
    """x -> a -> b -> c -> y, three pointwise group-1 convs."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Conv", ["x", "a"], ["ya"], name="a"),
        helper.make_node("Conv", ["ya", "b"], ["yb"], name="b"),
        helper.make_node("Conv", ["yb", "c"], ["y"], name="c"),
    ]
    inits = {n: conv_weight(rng, C, C, 1, 0.2) for n in "abc"}
    m = model(nodes, inits, {"x": [1, C, S, S]}, {"y": [1, C, S, S]})
    return m, find_layers(m)


def test_convs_kept_dense_count_as_ort_convs() -> None:
    from sparsec.passes.layout import reorder_elements

    _, layers = _chain()
    image = C * S * S
    a, b, c = (la.node for la in layers)
    assert [reorder_elements(n) for n in (a, b, c)] == [0, 0, 0]  # group-1 neighbours: ORT's only if kept dense
    assert reorder_elements(b, frozenset({"ya"})) == image  # a (output "ya") kept dense: b's input side
    assert reorder_elements(b, frozenset({"ya", "y"})) == 2 * image
    assert reorder_elements(a, frozenset({"yb"})) == image


def test_settle_recounts_until_stable() -> None:
    """b sits before c, which stayed dense: b pays conversions and goes dense; then a, next to b, does too."""
    from sparsec.passes.layout import settle_layout

    _, layers = _chain()
    first = {"a": Choice("csr", "x"), "b": Choice("csr", "x"), "c": Choice("dense", "x")}
    layers = [replace(la, choice=first[la.name]) for la in layers]
    calls: list[str] = []

    def rechoose(la: Layer) -> Layer:
        calls.append(la.name)
        return replace(la, choice=Choice("dense", "conversions") if la.reorder else Choice("csr", "x"))

    settled = settle_layout(layers, rechoose)
    assert {la.name: la.format for la in settled} == {"a": "dense", "b": "dense", "c": "dense"}
    assert calls == ["b", "a"]  # a was recounted only once b had gone dense
