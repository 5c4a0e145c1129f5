"""The compile's numeric check: the sealed artifact against ORT on the original model, on this host's runner.

Two checks, both on fresh random inputs, both failing the compile beyond the tolerance:
1. end outputs: the artifact as written, every graph output (sparsec/verify.py);
2. per layer: every sparse node's output, through a probe copy of the artifact that also outputs them
   (sparsec/verify_layers.py); the error names the worst layer. In a model whose float sparse layers feed
   quantizers, each layer runs on the reference's inputs and the end outputs are reported only
   (sparsec/verify_local.py).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .artifact import MANIFEST, MODEL, ArtifactWriter, value_infos
from .errors import SparsecError
from .layer import Layer
from .targets.base import Progress, Target, quiet
from .verify_layers import Feeds, LayerReport, check_layers, known_values, taps, with_outputs
from .verify_local import local_probe

LARGER_SIZES = (32, 224)  # unset symbolic dims of the per-layer check when convs are sized at run time


def _sized_at_run_time(rewritten: onnx.ModelProto) -> bool:
    """Whether a sparse conv of the compiled model reads its spatial size at run time."""
    from .node import read_proto, sparse_protos

    return any((conv := read_proto(n).conv) is not None and conv.dynamic for n in sparse_protos(rewritten))


@contextmanager
def _probe(target: Target, artifact: Path, model: onnx.ModelProto, manifest: dict[str, Any]) -> Iterator[Path]:
    """A sealed copy of ``artifact`` whose model is ``model`` (the rewritten model with extra outputs), in a
    temporary folder removed afterwards; the target's bundle is derived again from it."""
    with tempfile.TemporaryDirectory(prefix="sparsec-probe-") as tmp, ArtifactWriter(Path(tmp) / "probe") as w:
        for f in sorted(artifact.iterdir()):
            if f.is_file() and f.name not in (MANIFEST, MODEL):
                shutil.copy2(f, w.path(f.name))
        onnx.save(model, str(w.path(MODEL)))
        target.bundle(w.path(MODEL).parent, quiet)
        yield w.seal(
            {
                **manifest,
                "inputs": value_infos(model.graph.input, model),
                "outputs": value_infos(model.graph.output, model),
            }
        )


def verify_artifact(
    target: Target,
    original: onnx.ModelProto,
    rewritten: onnx.ModelProto,
    artifact: Path,
    manifest: dict[str, Any],
    narrowed: dict[str, tuple[int, tuple[int, ...]]],
    dims: dict[str, int],
    seed: int,
    say: Progress,
    tolerance: float | None = None,
    records: list[Layer] | None = None,
) -> tuple[dict[str, float], LayerReport]:
    """End-output errors by output name, and the per-layer report; raises SparsecError on a mismatch beyond
    ``tolerance`` (default verify.TOLERANCE). ``records`` (the compile's layers) say which sparse layers are
    quantized: integer layers the reference computes exactly and dequantized weights it folds
    (sparsec/integer_reference.py); where float sparse layers feed quantizers the end outputs are reported, not held to
    ``tolerance``, and each sparse layer is checked on the reference's own inputs (sparsec/verify_local.py)."""
    from .integer_reference import exact_reference, fold_dequantized
    from .verify import (
        TOLERANCE,
        accepted_dims,
        compare_outputs,
        random_feeds,
        reference_outputs,
        reference_session,
        unset_dims,
    )
    from .verify_local import quantizes_activations

    limit = tolerance or TOLERANCE
    sparse = [la for la in records or [] if la.format != "dense"]
    integer = {la.weight_name: la.name for la in sparse if la.integer}
    # every float layer's dequantized weight, sparse or dense, and a dense layer's bias: compile folds them all
    # (passes/constants.py), so ORT runs the dense layers on those float32 values too; with the original's bias
    # behind a DequantizeLinear, ORT keeps a Conv off its NCHWc kernels, whose other summation order the next
    # quantizer turns into whole steps (a MobileNet-v2 QDQ model left all dense failed verification, 3.5% off)
    dequantized = [la.weight_name for la in records or [] if not la.integer and la.weight_dtype != "float32"]
    biases = [b for la in records or [] if la.format == "dense" and (b := _computed_bias(la))]
    if integer:
        say(
            f"the reference computes the {len(integer)} integer layers (MatMul/ConvInteger, QLinear ops) compiled "
            "sparse exactly, as ONNX defines them (ORT's u8s8 kernels saturate on CPUs without VNNI)"
        )
    if dequantized:
        say(
            f"the reference runs the {len(dequantized)} layers with dequantized weights on their float32 value, as "
            "compiled (ORT's int8 kernels for them saturate on CPUs without VNNI)"
        )
    reference_model = exact_reference(fold_dequantized(original, dequantized + biases), integer)
    say(f"verifying against ONNX Runtime on random inputs ({target.name} artifact run on this host)")
    sized = accepted_dims(original, dims, seed=seed + 1)  # symbolic dims --dim leaves unset get sizes
    feeds = random_feeds(original, sized, seed=seed + 1)
    errors = compare_outputs(reference_model, lambda: target.run_artifact(artifact, feeds), feeds)
    found, unmatched = taps(rewritten, reference_model, narrowed)
    # Float sparse layers feeding quantizers, or another ORT build running the other ops before quantizers: each
    # layer is checked on ORT's inputs instead (when all can be).
    floats, quantizes = any(not la.integer for la in sparse), quantizes_activations(original)
    foreign = bool(target.foreign_ort) and quantizes
    local = bool(found) and not unmatched and (floats or foreign) and quantizes
    bad = {k: v for k, v in errors.items() if not v <= limit}
    why = (
        f"{target.foreign_ort} rounds the model's other float ops its own way, and later quantizers turn that into "
        "whole steps"
        if foreign and not floats
        else "float sums rounded in another order move values across the rounding boundaries of later quantizers"
    )
    if bad and local:
        say(
            f"end outputs differ from ORT by up to {max(bad.values()):.2g}: {why}; each sparse layer is checked on "
            "ORT's inputs"
        )
    elif bad and foreign and not sparse:
        say(f"end outputs differ from ORT by up to {max(bad.values()):.2g}: {why}; no layer is sparse")
    elif bad:
        name, err = max(bad.items(), key=lambda kv: kv[1])
        raise SparsecError(f"verification failed: output {name!r} differs from ORT (max rel error {err:.3g} > {limit})")

    if not found:
        return errors, LayerReport(unmatched=unmatched)
    guessed = [sized[u] for u in unset_dims(original, dims)]  # sizes sparsec chose, not --dim's
    if min(guessed, default=LARGER_SIZES[0]) < LARGER_SIZES[0] and _sized_at_run_time(rewritten):
        # The end outputs ran at the smallest accepted size, where a conv sized at run time mostly takes its
        # pixel-by-pixel path; the layers are checked where its vector tiles run too, when the model accepts it.
        try:
            sized = accepted_dims(original, dims, seed=seed + 1, tries=LARGER_SIZES)
        except SparsecError:
            pass
    say(f"verifying the outputs of {len(found)} sparse layers against the same tensors in ONNX Runtime")
    fed: dict[str, str] = {}  # local: new probe input -> the reference value it is fed
    probe_model = rewritten
    if local:
        probe_model, fed = local_probe(rewritten, known_values(reference_model))
    probe_model = with_outputs(probe_model, [t.value for t in found])
    probe_names = [o.name for o in probe_model.graph.output]

    sessions: dict[tuple[str, ...], tuple[list[str], Any]] = {}  # the same names every round: one ORT session
    # Every reference value, fed or compared, from one session: ORT fuses differently when asked for other outputs
    # (an Add output requested keeps it out of SkipLayerNormalization), and a quantizer after that makes the values
    # fed to a layer steps away from those its output is compared with (Q/K/V after a residual taken into a kernel)
    wanted = sorted({t.value for t in found} | set(fed.values()))

    def reference(feeds: Feeds, names: list[str]) -> dict[str, np.ndarray]:
        extra = tuple(n for n in sorted({*wanted, *names}) if n not in feeds)
        if extra not in sessions:
            model = with_outputs(reference_model, list(extra))
            sessions[extra] = ([o.name for o in model.graph.output], reference_session(model))
        out_names, sess = sessions[extra]
        values = dict(zip(out_names, reference_outputs(reference_model, feeds, sess), strict=True))
        return {**values, **{n: feeds[n] for n in names if n in feeds}}

    def feeds_for(offset: int, scale: float) -> Feeds:
        return random_feeds(original, sized, seed=seed + offset, scale=scale)

    with _probe(target, artifact, probe_model, manifest) as probe:

        def compiled(feeds: Feeds) -> dict[str, np.ndarray]:
            if fed:
                values = reference(feeds, sorted(set(fed.values())))
                feeds = {**feeds, **{new: values[old] for new, old in fed.items()}}
            return dict(zip(probe_names, target.run_artifact(probe, feeds), strict=True))

        report = check_layers(found, reference, compiled, feeds_for)
    report.unmatched = unmatched
    failing = [t for t in found if not report.errors[t.layer] <= limit]
    if failing:
        first = failing[0]  # in graph order: where the difference starts; later layers inherit it
        err = report.errors[first.layer]
        raise SparsecError(
            f"verification failed: sparse layer {first.layer!r} (output {first.value!r}) differs from ORT "
            f"(max rel error {err:.3g} > {limit}; {len(failing)} of {len(found)} sparse layers differ, "
            f"end outputs within {max(errors.values(), default=0.0):.2g})"
        )
    return errors, report


def _computed_bias(layer: Layer) -> str:
    """The name of a dequantized float layer's Conv / Gemm bias (input 2), or ""."""
    node = layer.node
    if layer.integer or layer.weight_dtype == "float32" or node is None or layer.op not in ("Conv", "Gemm"):
        return ""
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    return str(bias.name) if bias is not None else ""
