"""Calibration fitting and storage: per-bucket constants of the cost model by non-negative least squares on
relative error, the per-ISA JSON table, and the measured speedup summary."""

from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from sparsec.formats import family

BUCKETS = (1, 16, 128, 1024)  # M of the calibrated points; 1024: a batch of 8 sequences of 128 tokens


def nnls(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """argmin ||a x - y|| subject to x >= 0, exactly, by trying every active set (a has a handful of columns)."""
    best, best_res = np.zeros(a.shape[1]), float(np.sum(y**2))
    for r in range(1, a.shape[1] + 1):
        for cols in itertools.combinations(range(a.shape[1]), r):
            sol = np.linalg.lstsq(a[:, cols], y, rcond=None)[0]
            if (sol < 0).any():
                continue
            x = np.zeros(a.shape[1])
            x[list(cols)] = sol
            res = float(np.sum((a @ x - y) ** 2))
            if res < best_res - 1e-15:
                best, best_res = x, res
    return best


def fit_bucket(rows: list[dict[str, Any]], m: int) -> tuple[list[float], list[float]]:
    """[a_ns, b_ns, c_us] for rows measured at M = m, minimizing relative error; and each row's relative error."""
    stored = np.array([r["stored"] for r in rows], float)
    n = np.array([r["n"] for r in rows], float)
    t = np.array([r["us"] for r in rows], float)
    design = np.stack([m * stored / 1000.0, m * n / 1000.0, np.ones_like(t)], axis=1)
    coef = np.maximum(nnls(design / t[:, None], np.ones_like(t)), 0.0)
    errors = np.abs(design @ coef - t) / t
    return [float(f"{v:.4g}") for v in coef], [float(e) for e in errors]


def fit_table(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Constants and fit errors per key (dense, each preset, each sparse family) and bucket: the median absolute
    relative error per bucket and over all buckets ("all"), and the largest ("max")."""
    keys = sorted({r["fmt"] for r in rows}) + sorted({family(r["fmt"]) for r in rows if r["fmt"] != "dense"})
    table: dict[str, Any] = {}
    fit: dict[str, Any] = {}
    for key in dict.fromkeys(keys):
        sel = [r for r in rows if key in (r["fmt"], family(r["fmt"]))]
        table[key], fit[key] = {}, {}
        every = []
        for m in BUCKETS:
            coef, errors = fit_bucket([r for r in sel if r["m"] == m], m)
            table[key][str(m)] = coef
            fit[key][str(m)] = round(statistics.median(errors), 4)
            every += errors
        fit[key]["all"] = round(statistics.median(every), 4)
        fit[key]["max"] = round(max(every), 4)  # the worst point of any bucket
    return table, fit


def write(out: Path, isa: str, data: dict[str, Any], merge: bool = False) -> None:
    """Store the host ISA's table in ``out``, keeping other ISAs' tables (and their sources) already there; with
    ``merge``, only ``data``'s sparse entries go into the host ISA's existing table (dense stays as calibrated)."""
    old: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    if merge and isa in old.get("isa", {}):
        data = _merged(old, isa, data)
    sources = dict(old.get("sources", {}))
    if "isa" in old and not sources:  # a file from before per-ISA sources: its source describes all its ISAs
        sources = {name: old.get("source", "") for name in old["isa"]}
    tables = {name: t for name, t in old.get("isa", {}).items() if name != isa}
    fits = {name: f for name, f in old.get("fit", {}).items() if name != isa and name in tables}
    variants = {name: v for name, v in old.get("variants", {}).items() if name != isa and name in tables}
    sources = {name: s for name, s in sources.items() if name in tables}
    tables[isa], fits[isa], variants[isa], sources[isa] = data["table"], data["fit"], data["variants"], data["source"]
    result = {
        "source": data["source"],
        "sources": dict(sorted(sources.items())),
        "isa": dict(sorted(tables.items())),
        "fit": dict(sorted(fits.items())),
        "variants": dict(sorted(variants.items())),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_dump(result) + "\n")


def _merged(old: dict[str, Any], isa: str, data: dict[str, Any]) -> dict[str, Any]:
    """The host ISA's old table with ``data``'s entries other than dense put in, sources joined."""
    new = {key: v for key, v in data["table"].items() if key != "dense"}
    source = old.get("sources", {}).get(isa, old.get("source", ""))
    return {
        "table": {**old["isa"][isa], **new},
        "fit": {**old.get("fit", {}).get(isa, {}), **{k: v for k, v in data["fit"].items() if k in new}},
        "variants": {**old.get("variants", {}).get(isa, {}), **data["variants"]},
        "source": f"{source}; {', '.join(sorted(new))} from {data['source']}",
    }


def _dump(obj: Any, indent: int = 0) -> str:
    """JSON with one line per bucket table (readable diffs of a mostly numeric file)."""
    if isinstance(obj, dict) and obj and any(isinstance(v, dict) for v in obj.values()):
        pad = " " * (indent + 2)
        items = [f"{pad}{json.dumps(k)}: {_dump(v, indent + 2)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return json.dumps(obj)


def speedup_table(rows: list[dict[str, Any]], density: float) -> str:
    """Measured speedup vs ORT dense per format and M at ``density`` (N:M at its own), median over shapes."""
    lines = [f"measured speedup vs ORT dense, density {density} (N:M: its own), median over shapes"]
    lines.append(f"{'format':12s}" + "".join(f"{'M=' + str(m):>9s}" for m in BUCKETS))
    for fmt in dict.fromkeys(r["fmt"] for r in rows if r["fmt"] != "dense"):
        sel = [r for r in rows if r["fmt"] == fmt and (family(fmt) == "nm" or abs(r["density"] - density) < 1e-9)]
        if sel:
            cells = [statistics.median(r["speedup"] for r in sel if r["m"] == m) for m in BUCKETS]
            lines.append(f"{fmt:12s}" + "".join(f"{v:9.2f}" for v in cells))
    return "\n".join(lines)
