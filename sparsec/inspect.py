"""``sparsec inspect``: what the compiler sees in each constant weight and what it would do with it on a target."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def inspect_model(
    model_path: str | Path, target_name: str = "x86", dims: dict[str, int] | None = None
) -> dict[str, Any]:
    """A JSON-ready report: one row per MatMul/Gemm weight with its sparsity profile and the chosen format."""
    from .frontend import load_model
    from .options import CompileOptions
    from .pipeline import analyse_and_select
    from .targets.base import get_target

    target = get_target(target_name)
    model = load_model(model_path)
    rows = analyse_and_select(model, target, CompileOptions(target=target_name, verify=False, dims=dims or {}))
    return {"model": str(model_path), "target": target.describe(), "weights": rows}


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
        layer = r["layer"] if len(r["layer"]) <= 44 else "..." + r["layer"][-41:]
        zero = "-" if r["zero_rows"] is None else f"{r['zero_rows']}/{r['zero_cols']}"
        dens = "-" if r["density"] is None else f"{r['density']:.2f}"
        lines.append(
            f"{layer:<44} {r['op']:<6} {shape:<13} {dens:>5}  {nm:<10} {_fmt_best(r['blocks']):<21} "
            f"{zero:<11} {r['format']}: {r['reason'].removeprefix('stays dense: ')}"
        )
    if not report["weights"]:
        lines.append("(no MatMul/Gemm with a constant weight)")
    return "\n".join(lines)
