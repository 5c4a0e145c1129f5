"""The graph pipeline: shrink -> analysis -> select -> rewrite -> fuse -> partition (docs/internals.md).

``run_graph_passes`` returns the rewritten model and one manifest record per layer; ``analyse_and_select`` stops
after ``select`` and returns the report rows of ``sparsec inspect``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx

from .errors import SparsecError
from .options import CompileOptions

Progress = Callable[[str], None]


def _select(model: onnx.ModelProto, target: Any, options: CompileOptions) -> tuple[list[Any], dict[str, Any]]:
    from .passes.analysis import find_layers
    from .passes.cost_model import cost_model
    from .passes.select import candidates, check_forced, choose

    check_forced(options.format, target.supports, target.name)
    layers = find_layers(model)
    cost = cost_model(target.name, getattr(target, "isa", "generic"))
    presets = candidates(target.supports, cost)
    choices = {}
    for layer in layers:
        rows = layer.rows or options.representative_m
        choices[layer.name] = choose(layer, options.format, presets, cost, rows)
    return layers, choices


def _annotate(layers: list[Any], choices: dict[str, Any]) -> None:
    """The selection as node metadata (``sparsec.format`` / ``sparsec.reason``), visible in dumps."""
    for layer in layers:
        for key, value in (
            ("sparsec.format", choices[layer.name].format),
            ("sparsec.reason", choices[layer.name].reason),
        ):
            prop = layer.node.metadata_props.add()
            prop.key, prop.value = key, value


def analyse_and_select(model: onnx.ModelProto, target: Any, options: CompileOptions) -> list[dict[str, Any]]:
    """One ``inspect`` row per constant weight: profile plus the chosen format and why."""
    layers, choices = _select(model, target, options)
    rows = []
    for layer in layers:
        p = layer.profile
        rows.append(
            {
                "layer": layer.name,
                "op": layer.op,
                "shape": [layer.n, layer.k],
                "density": round(p.density, 6) if p else None,
                "nm": {k: round(v, 4) for k, v in p.nm.items()} if p else {},
                "blocks": {k: round(v, 4) for k, v in p.block_fill.items()} if p else {},
                "zero_rows": p.zero_rows if p else None,
                "zero_cols": p.zero_cols if p else None,
                "format": choices[layer.name].format,
                "reason": choices[layer.name].reason,
            }
        )
    return rows


def _dump(dump_dir: Path | None, stage: str, model: onnx.ModelProto) -> None:
    if dump_dir is not None:
        dump_dir.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(dump_dir / f"{stage}.onnx"))


def run_graph_passes(
    model: onnx.ModelProto,
    target: Any,
    options: CompileOptions,
    dump_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> tuple[onnx.ModelProto, list[dict[str, Any]]]:
    """The rewritten model (the input is not modified) and the per-layer records for the manifest."""
    from .passes.fuse import fuse
    from .passes.partition import partition
    from .passes.rewrite import rewrite
    from .passes.shrink import shrink

    say = progress or (lambda _m: None)
    dump = Path(dump_dir) if dump_dir is not None else None
    work = copy.deepcopy(model)
    for line in shrink(work):
        say(f"shrunk {line}")
    _dump(dump, "0-shrink", work)
    layers, choices = _select(work, target, options)
    for layer in layers:
        if layer.nonfinite:
            raise SparsecError(
                f"layer {layer.name}: weight {layer.weight_name!r} has {layer.nonfinite} NaN/Inf values; "
                "fix the model (sparsec does not compile non-finite weights)"
            )
    _annotate(layers, choices)
    _dump(dump, "1-select", work)
    for layer in layers:
        if options.format not in ("auto", "dense") and choices[layer.name].format == "dense" and not layer.skip:
            say(f"warning: layer {layer.name} stays dense: {choices[layer.name].reason.removeprefix('stays dense: ')}")
    formats = {name: c.format for name, c in choices.items()}
    kernels = rewrite(work, layers, formats)
    _dump(dump, "2-rewrite", work)
    epilogues = fuse(work)
    _dump(dump, "3-fuse", work)
    regions = partition(work, target.supports, target.name)
    _dump(dump, "4-partition", work)
    try:
        onnx.checker.check_model(work)
    except Exception as e:
        raise SparsecError(f"internal error: the rewritten model is invalid ({str(e).splitlines()[0][:200]})") from None
    records = []
    for layer in layers:
        c = choices[layer.name]
        rec: dict[str, Any] = {
            "name": layer.name,
            "op": layer.op,
            "shape": [layer.n, layer.k],
            "format": c.format,
            "density": round(layer.profile.density, 6) if layer.profile else None,
            "reason": c.reason,
        }
        if c.speedup is not None:
            rec["predicted_speedup"] = round(c.speedup, 3)
        if layer.name in kernels:
            rec.update(kernel=kernels[layer.name], epilogue=epilogues.get(layer.name, []), region=regions[layer.name])
        records.append(rec)
    return work, records
