"""``sparsec inspect --plot FILE.svg|png``: per layer, the weight's density and chosen format, where the time goes
(the cost model's time of ORT's dense op and of the chosen kernel) and the predicted speedup, drawn with matplotlib.

The SVG keeps its text as text (searchable, testable) and carries no date, so the same report gives the same bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SparsecError

SUFFIXES = (".svg", ".png")
COLORS = {"dense": "#9e9e9e", "csr": "#1f77b4", "bsr": "#2ca02c", "nm": "#ff7f0e"}
MAX_LABEL = 28


@dataclass(frozen=True)
class Series:
    """What the plot draws, one entry per layer in graph order."""

    names: list[str]
    formats: list[str]
    density: list[float]  # 0 where unknown (no profile)
    dense_us: list[float | None]  # ORT's dense op, cost model
    sparsec_us: list[float | None]  # the chosen format's time (dense_us when the layer stays dense)
    speedup: list[float | None]  # predicted (or measured) speedup of the best sparse format, chosen or not


def family(fmt: str) -> str:
    return fmt.split(":", 1)[0]


def series(report: dict[str, Any]) -> Series:
    """The plotted values of an ``inspect`` report."""
    rows = report["weights"]
    dense_us = [r.get("dense_us") for r in rows]
    speed = [r.get("predicted_speedup", r.get("measured_speedup")) for r in rows]
    sparsec_us = [
        None if d is None else d / s if r["format"] != "dense" and s else d
        for r, d, s in zip(rows, dense_us, speed, strict=True)
    ]
    return Series(
        names=[r["name"] for r in rows],
        formats=[r["format"] for r in rows],
        density=[r["density"] if r["density"] is not None else 0.0 for r in rows],
        dense_us=dense_us,
        sparsec_us=sparsec_us,
        speedup=speed,
    )


def check_path(path: Path) -> None:
    """A plot path must end in .svg or .png and be in an existing directory (checked before any work)."""
    if path.suffix.lower() not in SUFFIXES:
        raise SparsecError(f"--plot {path}: expected a .svg or .png file name")
    if not path.parent.is_dir():
        raise SparsecError(f"--plot {path}: directory {path.parent} does not exist")


def _label(name: str) -> str:
    return name if len(name) <= MAX_LABEL else "..." + name[-(MAX_LABEL - 3) :]


def render(report: dict[str, Any], path: Path) -> str:
    """Draw the report into ``path`` (written atomically); returns a one-line summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from .prune_cli import write_atomic

    check_path(path)
    s = series(report)
    if not s.names:
        raise SparsecError(f"--plot {path}: the model has no MatMul/Gemm/Conv with a constant weight to plot")
    n = len(s.names)
    x = list(range(n))
    colors = [COLORS.get(family(f), "#d62728") for f in s.formats]
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "sparsec", "font.size": 8}):
        fig, (ax_d, ax_t, ax_s) = plt.subplots(3, 1, figsize=(max(8.0, 0.22 * n + 2), 9), sharex=True)
        ax_d.bar(x, s.density, color=colors)
        ax_d.set_ylabel("density (nonzeros)")
        ax_d.set_ylim(0, 1)
        used = [(fam, color) for fam, color in COLORS.items() if any(family(f) == fam for f in s.formats)]
        handles = [Patch(color=color, label=fam) for fam, color in used]
        ax_d.legend(handles=handles, loc="upper right", title="chosen format", ncols=len(handles))
        t = report.get("target", {})
        ax_d.set_title(f"{Path(str(report.get('model', ''))).name} on {t.get('name', '?')} ({t.get('cpu') or '?'})")

        dense = [d or 0.0 for d in s.dense_us]
        ours = [d or 0.0 for d in s.sparsec_us]
        ax_t.bar(x, dense, color="#dddddd", label="ORT dense")
        ax_t.bar(x, ours, width=0.5, color=colors, label="sparsec (chosen format)")
        source = "measured" if any("measured_speedup" in r for r in report["weights"]) else "cost model"
        ax_t.set_ylabel(f"time per layer, us ({source})")
        ax_t.legend(loc="upper right")
        ax_t.set_title(f"these layers: ORT dense {sum(dense) / 1e3:.3f} ms, sparsec {sum(ours) / 1e3:.3f} ms")

        known = [(i, v) for i, v in enumerate(s.speedup) if v]
        ax_s.scatter(
            [i for i, _ in known],
            [v for _, v in known],
            c=[colors[i] for i, _ in known],
            marker="o",
            zorder=3,
        )
        ax_s.axhline(1.0, color="black", linewidth=0.8)
        ax_s.set_yscale("log")
        label = "measured" if source == "measured" else "predicted"
        ax_s.set_ylabel(f"{label} speedup of the best\nsparse format over ORT dense")
        ax_s.set_xticks(x, [_label(v) for v in s.names], rotation=90)
        fig.tight_layout()
        buf = io.BytesIO()
        kind = path.suffix.lower()[1:]
        fig.savefig(buf, format=kind, metadata={"Date": None} if kind == "svg" else None)
        plt.close(fig)
    write_atomic(path, buf.getvalue())
    sparse = sum(f != "dense" for f in s.formats)
    return f"wrote {path} ({n} layers, {sparse} sparse)"
