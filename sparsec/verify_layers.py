"""Per-layer verification: every sparse node's output against ORT's value of the same tensor in the original model.

The end outputs of a deep model often say nothing about its sparse layers: softmax, sigmoid and rounding saturate on
random inputs, so a wrong kernel can leave them bit-identical. A sparsec node keeps the name of the value it replaces
(for a fused epilogue, the value after the epilogue), so the same name exists in the original. Both models get those
values as extra graph outputs (the compiled one in a *probe* copy of the artifact; the artifact itself is not touched)
and run on the same random inputs. Channels ``shrink`` removed are dropped from the reference before comparing.

A layer whose activation input is constant on the inputs used (e.g. every value negative before a Relu) is not
*exercised*: a wrong weight would go unseen. Further rounds, with other seeds and input scales, run until every layer
is exercised or the rounds run out; those still unexercised are reported by name.

A layer whose kernel ends in a fused QuantizeLinear -> DequantizeLinear (a QDQ model's activation quantization,
``Epilogue.quant``) outputs values on a grid of quantization steps: where the kernel's float sum and ORT's, summed in
another order, fall on either side of a rounding boundary, the two outputs are one step apart (per fused
quantization). Such *flips* are allowed at up to ``FLIP_SHARE`` of a layer's values and up to the sum of its
quantization steps each, and counted in the report; every other value is held to the tolerance as before. A wrong
kernel moves many values or moves them further (a weight off by less than a step shows as flips in its output
feature: 1/N of the values).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from . import node as sparse_node
from .verify import relative_error

Feeds = dict[str, np.ndarray]
# (seed offset, input scale) of each round; the first is the end-output check's own inputs
ROUNDS = ((1, 1.0), (2, 0.1), (3, 10.0))
FLIP_SHARE = 1e-3  # values of a layer with fused quantization allowed one step off (at a rounding boundary)


@dataclass(frozen=True)
class Tap:
    """One sparse layer as verification sees it."""

    layer: str  # the sparsec node's (layer's) name
    value: str  # its output, the same tensor name in the original model
    activation: str  # its activation input in the original model ("" when the compiled graph feeds it otherwise)
    narrowed: tuple[int, tuple[int, ...]] | None = None  # (channel axis, channels kept) when shrink narrowed it
    steps: tuple[float, ...] = ()  # the scales of the quantizations fused into its kernel, in order


@dataclass
class LayerReport:
    errors: dict[str, float] = field(default_factory=dict)  # layer -> worst relative error over the rounds
    unexercised: list[str] = field(default_factory=list)  # layers whose input stayed constant in every round
    unmatched: list[str] = field(default_factory=list)  # sparse layers whose output the original does not have
    flips: dict[str, int] = field(default_factory=dict)  # layer -> values a quantization step off (most in a round)
    rounds: int = 0

    def summary(self) -> str:
        """E.g. '18/18 sparse layers checked'; names what could not be checked."""
        n = len(self.errors) + len(self.unmatched)
        text = f"{len(self.errors)}/{n} sparse layers checked"
        if self.unexercised:
            text += f" ({len(self.unexercised)} with a constant input on random data: {_names(self.unexercised)})"
        if self.unmatched:
            text += f" ({len(self.unmatched)} without a counterpart in the original: {_names(self.unmatched)})"
        flipped = sum(self.flips.values())
        if flipped:
            text += f"; {flipped} quantized values one step off ORT's at rounding boundaries"
        return text


def _names(names: list[str], limit: int = 3) -> str:
    more = f", +{len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def known_values(model: onnx.ModelProto) -> set[str]:
    """The values a run of ``model`` can return: node outputs and graph inputs."""
    return {o for n in model.graph.node for o in n.output if o} | {i.name for i in model.graph.input}


def taps(
    rewritten: onnx.ModelProto, original: onnx.ModelProto, narrowed: dict[str, tuple[int, tuple[int, ...]]]
) -> tuple[list[Tap], list[str]]:
    """The checkable sparse layers of ``rewritten``, and the names of those whose output the original lacks."""
    known = known_values(original)
    found: list[Tap] = []
    unmatched: list[str] = []
    for n in sparse_node.sparse_protos(rewritten):
        out = n.output[0]
        if out not in known:
            unmatched.append(n.name)
            continue
        act = n.input[0] if n.input and n.input[0] in known else ""
        steps = tuple(q.scale for q in sparse_node.read_proto(n).epilogue.quant)
        found.append(Tap(n.name, out, act, narrowed.get(out), steps))
    return found, unmatched


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph also outputs ``names`` (after its own outputs, types from value_info)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    have = {o.name for o in out.graph.output}
    typed = {v.name: v for v in out.graph.value_info}
    for name in names:
        if name in have:
            continue
        have.add(name)
        vi = onnx.ValueInfoProto()
        if name in typed:
            vi.CopyFrom(typed[name])
        else:
            vi.name = name
        out.graph.output.append(vi)
    return out


def _live(x: np.ndarray) -> bool:
    """The activation varies (so the layer's weights shape its output)."""
    a = np.asarray(x, np.float64)
    fin = a[np.isfinite(a)]
    return fin.size > 1 and float(np.ptp(fin)) > 0.0


def check_layers(
    found: list[Tap],
    reference: Callable[[Feeds, list[str]], dict[str, np.ndarray]],
    compiled: Callable[[Feeds], dict[str, np.ndarray]],
    feeds_for: Callable[[int, float], Feeds],
) -> LayerReport:
    """Compare each tap over the rounds of ``ROUNDS``. ``reference(feeds, names)``: the original's values of ``names``;
    ``compiled(feeds)``: the probe artifact's values by name; ``feeds_for(seed_offset, scale)``: random inputs."""
    report = LayerReport()
    if not found:
        return report
    want = sorted({t.value for t in found} | {t.activation for t in found if t.activation})
    pending = {t.layer for t in found if t.activation}
    for offset, scale in ROUNDS:
        feeds = feeds_for(offset, scale)
        ref = reference(feeds, want)
        got = compiled(feeds)
        report.rounds += 1
        for t in found:
            r = ref[t.value]
            if t.narrowed is not None:
                axis, keep = t.narrowed
                r = np.take(r, np.asarray(keep, np.int64), axis=axis)
            err, flips = quantized_error(got[t.value], r, t.steps) if t.steps else (relative_error(got[t.value], r), 0)
            report.errors[t.layer] = max(report.errors.get(t.layer, 0.0), err)
            if flips:
                report.flips[t.layer] = max(report.flips.get(t.layer, 0), flips)
            if t.layer in pending and _live(ref[t.activation]):
                pending.discard(t.layer)
        if not pending:
            break
    report.unexercised = [t.layer for t in found if t.layer in pending]
    return report


def quantized_error(got: np.ndarray, ref: np.ndarray, steps: tuple[float, ...]) -> tuple[float, int]:
    """The relative error of a layer with fused quantizations (module docstring) and the values flipped: those
    at most the sum of the ``steps`` apart count as flips while there are at most ``FLIP_SHARE`` of them (at least
    one) and are then left out of the error; otherwise every value counts."""
    g, r = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if g.shape != r.shape or not np.all(np.isfinite(g) == np.isfinite(r)):
        return relative_error(got, ref), 0
    off = np.isfinite(r) & (g != r)
    reach = sum(steps) * 1.01  # one step apart, give or take the float32 rounding of either value
    flipped = off & (np.abs(g - np.where(np.isfinite(r), r, 0.0)) <= reach)
    count = int(np.count_nonzero(flipped))
    if count == 0 or count > max(1, int(FLIP_SHARE * r.size)):
        return relative_error(got, ref), 0
    return relative_error(np.where(flipped, r, g), r), count
