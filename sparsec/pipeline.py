"""The graph pipeline: shrink -> analysis -> select -> rewrite -> fuse -> partition (docs/internals.md).

``run_graph_passes`` returns the rewritten model and one manifest record per layer; ``analyse_and_select`` stops
after ``select`` and returns the report rows of ``sparsec inspect``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx

from .errors import SparsecError
from .options import CompileOptions

Progress = Callable[[str], None]


def _select(
    model: onnx.ModelProto, target: Any, options: CompileOptions, say: Progress | None = None
) -> tuple[list[Any], dict[str, Any], dict[str, dict[str, Any]]]:
    """(layers, layer -> Choice, layer -> tuning record); tuning records exist only with ``options.tune``."""
    from .passes.analysis import find_layers
    from .passes.cost_model import cost_model
    from .passes.select import candidates, check_forced, choose

    check_forced(options.format, target.supports, target.name)
    layers = find_layers(model)
    cost = cost_model(target.name, getattr(target, "isa", "generic"))
    presets = candidates(target.supports, cost)
    choices = {}
    shapes = _concrete_shapes(model, options.dims) if options.dims else {}
    for layer in layers:
        if layer.op == "Conv" and not getattr(target, "sparse_conv", False) and not layer.skip:
            layer.skip = f"no sparse convolution kernels for target {target.name} (x86 and wasm have them)"
        layer.rows = layer.rows or _rows_from_shapes(layer, shapes)
        rows = layer.rows or options.representative_m
        choices[layer.name] = choose(layer, options.format, presets, cost, rows)
    if options.format == "auto" and not options.tune:  # --tune recounts with its own, measured choices
        m = options.representative_m
        _settle_layout(model, layers, choices, lambda la: choose(la, "auto", presets, cost, la.rows or m))
    tuned = _tune(model, layers, choices, presets, cost, target, options, say) if options.tune else {}
    return layers, choices, tuned


def _settle_layout(
    model: onnx.ModelProto, layers: list[Any], choices: dict[str, Any], rechoose: Callable[[Any], Any]
) -> None:
    """Recount each sparse conv's NCHWc conversions with the convs that stayed dense as ORT's too (passes/layout.py)
    and choose it again; a conv that goes back to dense adds conversions to its neighbours, so repeat until nothing
    changes (the sparse set only shrinks: at most one round per conv)."""
    from .passes.graph import GraphIndex
    from .passes.layout import reorder_elements

    convs = [la for la in layers if la.op == "Conv" and la.geom is not None and not la.skip]
    if not convs:
        return
    idx = GraphIndex(model)
    for _ in range(len(convs)):
        kept_dense = frozenset(la.node.output[0] for la in convs if choices[la.name].format == "dense")
        changed = False
        for la in convs:
            if choices[la.name].format == "dense":
                continue
            shape = idx.shapes.get(la.node.input[0]) or [None]
            batch = shape[0] if isinstance(shape[0], int) else 1
            reorder = batch * reorder_elements(idx, la.node, kept_dense)
            if reorder == la.reorder:
                continue
            la.reorder = reorder
            choices[la.name] = rechoose(la)
            changed = changed or choices[la.name].format == "dense"
        if not changed:
            return


def _concrete_shapes(model: onnx.ModelProto, dims: dict[str, int]) -> dict[str, list[Any]]:
    """Value shapes after shape inference with ``--dim`` values substituted into the graph inputs' symbolic dims
    (intermediate values often get fresh symbolic names that a plain lookup of ``dims`` cannot resolve)."""
    from .passes.graph import GraphIndex

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in dims:
                d.dim_value = dims[d.dim_param]
    del m.graph.value_info[:]
    try:
        m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    except Exception:  # noqa: BLE001 (the frontend already ran strict inference; this is a best effort)
        return {}
    return GraphIndex(m).shapes


def _rows_from_shapes(layer: Any, shapes: dict[str, list[Any]]) -> int | None:
    """The layer's M from concrete shapes (None when its activation's leading dims are not all known)."""
    shape = shapes.get(layer.node.input[0])
    if layer.op not in ("MatMul", "Gemm") or not shape or not all(isinstance(d, int) for d in shape):
        return None
    if layer.op == "Gemm":
        return int(shape[1] if layer.trans_a else shape[0])
    return int(math.prod(shape[:-1]))


def _tune(
    model: onnx.ModelProto,
    layers: list[Any],
    choices: dict[str, Any],
    presets: list[str],
    cost: Any,
    target: Any,
    options: CompileOptions,
    say: Progress | None,
) -> dict[str, dict[str, Any]]:
    """Replace the cost model's choices by measured ones (``passes/tune.py``); returns the tuning records."""
    from .options import toolchain_versions
    from .passes.select import Choice, predicted_speedup
    from .passes.tune import bar, tune_layer

    auto = options.format == "auto"
    todo = [la for la in layers if not la.skip and (auto or choices[la.name].format not in ("dense", ""))]
    if options.format == "dense":
        todo = []
    versions = toolchain_versions()
    records: dict[str, dict[str, Any]] = {}

    def tune_one(layer: Any) -> Any:
        rows = layer.rows or options.representative_m
        predicted = predicted_speedup(layer, cost, rows)
        forced = options.format != "auto"
        choice, variant, times, cached = tune_layer(
            layer, rows, [options.format] if forced else presets, predicted, target, versions
        )
        if forced and choice.format == "dense" and times:  # forced: keep the format, take its fastest variant
            best = min((e for e in times if e != "dense"), key=lambda e: times[e])
            variant = best.split("|")[1]
            choice = Choice(options.format, f"forced by --format ({choice.reason.removeprefix('stays dense: ')})")
        records[layer.name] = {
            "variant": variant,
            "measured_us": {k: round(v, 3) for k, v in sorted(times.items())},
            "cached": cached,
        }
        if say:
            how = "cached" if cached else f"measured {len(times) - 1} kernels and dense"
            say(f"tuning {bar(len(records), len(todo))} {layer.name}: {choice.format} {variant} ({how})")
        return choice

    for layer in todo:
        choices[layer.name] = tune_one(layer)
    if auto:  # measured times are cached: re-choosing after the layout recount measures nothing again
        _settle_layout(model, layers, choices, tune_one)
    return records


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
    layers, choices, _ = _select(model, target, options)
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
    layers, choices, tuned = _select(work, target, options, say)
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
        if layer.name in tuned:
            if "predicted_speedup" in rec:
                rec["measured_speedup"] = rec.pop("predicted_speedup")
            rec["tuning"] = {k: v for k, v in tuned[layer.name].items() if k != "cached"}
            if layer.name in kernels and tuned[layer.name]["variant"]:
                rec["variant"] = tuned[layer.name]["variant"]
        records.append(rec)
    return work, records
