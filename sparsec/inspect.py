"""``sparsec inspect``: what the compiler sees in each constant weight, what it would do with it on a target, and
why the nodes after a sparse layer were or were not fused into its kernel (nothing is built)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .layer import Layer
    from .passes.cost_model import CostModel


def inspect_model(
    model_path: str | Path,
    target_name: str = "x86",
    dims: dict[str, int] | None = None,
    input_shapes: dict[str, list[int]] | None = None,
    tune: bool = False,
) -> dict[str, Any]:
    """A JSON-ready report: one record per MatMul/Gemm/Conv weight (the manifest's fields, the sparsity profile and
    the fusion notes), from the compile stages up to ``fuse``; ``tune`` measures the formats as ``compile --tune``
    does (cached the same way)."""
    from .frontend import load_model
    from .options import CompileOptions
    from .passes.cost_model import cost_model
    from .pipeline import compile_graph
    from .shapes import fix_input_shapes
    from .targets.registry import get_target

    target = get_target(target_name)
    model = load_model(model_path)
    if input_shapes:
        model = fix_input_shapes(model, input_shapes)
    options = CompileOptions(
        target=target_name, verify=False, tune=tune, dims=dims or {}, input_shapes=input_shapes or {}
    )
    _, layers = compile_graph(model, target, options, until="fuse", refuse_nonfinite=False)
    cost = cost_model(target.name, target.isa, target.int8_dot)
    inits = {i.name for i in model.graph.initializer}
    return {
        "model": str(model_path),
        "target": target.describe(),
        "weights": [_record(la, cost, la.rows or options.representative_m) for la in layers],
        # overridable at run time in the original model; compiled as constants (passes/constants.py)
        "initializer_inputs": [i.name for i in model.graph.input if i.name in inits],
    }


def _record(layer: Layer, cost: CostModel, rows: int) -> dict[str, Any]:
    """The layer's manifest record with the sparsity profile, the fusion notes, the M its format was ranked at and
    the time of ORT's dense MatMul (Conv: its Conv) for it (``dense_us``: measured with --tune, else the cost
    model's; None where no kernel could take the layer)."""
    from .passes.choose import dense_time_us

    rec = layer.to_json(detail=True)
    rec["rows"] = rows
    if layer.tuning is not None and "dense" in layer.tuning.measured_us:
        rec["dense_us"] = round(layer.tuning.measured_us["dense"], 3)  # measured by --tune
    else:
        known = not layer.skip and cost.knows("dense")
        rec["dense_us"] = round(dense_time_us(layer, cost, rows), 3) if known else None
    return rec


def _fmt_best(d: dict[str, float], limit: int = 2) -> str:
    best = sorted(d.items(), key=lambda kv: -kv[1])[:limit]
    return " ".join(f"{k}:{v:.2f}" for k, v in best) or "-"


def format_table(report: dict[str, Any]) -> str:
    """A human-readable table of the report (``--json`` prints the report itself)."""
    head = (
        f"{'layer':<44} {'op':<6} {'shape (N x K)':<13} {'dens':>5}  {'full N:M':<10} {'best blocks':<21} "
        f"{'0-rows/cols':<11} format / reason"
    )
    t = report["target"]
    lines = [f"target: {t.get('name')} ({t.get('cpu') or t.get('arch', '?')})", head, "-" * len(head)]
    for r in report["weights"]:
        nm = ",".join(k for k, v in r["nm"].items() if v == 1.0) or "-"
        shape = "x".join(str(s) for s in r["shape"])
        layer = r["name"] if len(r["name"]) <= 44 else "..." + r["name"][-41:]
        zero = "-" if r["zero_rows"] is None else f"{r['zero_rows']}/{r['zero_cols']}"
        dens = "-" if r["density"] is None else f"{r['density']:.2f}"
        lines.append(
            f"{layer:<44} {r['op']:<6} {shape:<13} {dens:>5}  {nm:<10} {_fmt_best(r['blocks']):<21} "
            f"{zero:<11} {r['format']}: {r['reason'].removeprefix('stays dense: ')}"
        )
        if r.get("epilogue"):
            lines.append(f"{'':<46}fused: {', '.join(r['epilogue'])}")
        for note in r.get("unfused", []):
            lines.append(f"{'':<46}not fused: {note}")
    if not report["weights"]:
        lines.append("(no MatMul/Gemm with a constant weight)")
    listed = report.get("initializer_inputs") or []
    if listed:
        shown = ", ".join(listed[:5]) + (f", +{len(listed) - 5} more" if len(listed) > 5 else "")
        lines.append(
            f"note: {len(listed)} initializers are also graph inputs, so the original model lets a caller override "
            f"them at run time ({shown}); sparsec compiles them as constants and the compiled model does not take "
            "them as inputs"
        )
    return "\n".join(lines)
