"""End to end: paraphrase-MiniLM-L3 pruned (90% unstructured, 2:4), ORT dense vs sparsec vs DeepSparse 1.8.0.

ORT's baseline is the pruned model as exported (dynamic shapes; fixing them makes ORT slower, see DESIGN.md).
The sparsec artifact is timed twice per round, with ORT's intra-op spinning on and off (thread-pool contention).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .common import (
    CACHE,
    dense_session,
    interleaved,
    max_error,
    runner,
    source_digest,
    sparsec_session,
    wait_quiet,
)

PRUNINGS = {"unstructured:0.9": ("auto", "auto+tune", "csr"), "nm:2:4": ("auto", "nm:2:4")}  # +tune: --tune
BATCHES = (1, 8)
SEQ = 128
Say = Callable[[str], None]


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"


def pruned_model(pattern: str, say: Say) -> Path:
    """MiniLM-L3 pruned with ``sparsec prune`` (cached while the sparsec sources are unchanged)."""
    from models.minilm import fetch_minilm

    out = CACHE / "e2e" / source_digest() / f"minilm_{pattern.replace(':', '_')}.onnx"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    src = fetch_minilm()
    say(f"pruning MiniLM-L3 --pattern {pattern}")
    cli = Path(sys.executable).with_name("sparsec")
    proc = subprocess.run(
        [str(cli), "prune", str(src), "--pattern", pattern, "-o", str(out)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"sparsec prune failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return out


def compiled(model: Path, fmt: str, say: Say) -> tuple[Path, str]:
    """The artifact for ``model`` at ``fmt`` and a summary of the chosen formats (e.g. '18/18 csr')."""
    import json

    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions

    art = model.with_name(f"{model.stem}_{fmt.replace(':', '-').replace('+', '_')}.sparsec")
    if not (art / "manifest.json").is_file():
        shutil.rmtree(art, ignore_errors=True)
        say(f"compiling {model.name} --format {fmt}")
        t0 = time.perf_counter()
        base, _, tune = fmt.partition("+")
        compile_model(model, art, CompileOptions(target="x86", format=base, verify=False, tune=tune == "tune"))
        say(f"compiled in {time.perf_counter() - t0:.1f} s")
    layers = json.loads((art / "manifest.json").read_text())["layers"]
    sparse = [la["format"] for la in layers if la["format"] != "dense"]
    kinds = sorted(set(sparse))
    return art, f"{len(sparse)}/{len(layers)} {'+'.join(kinds) or 'dense'}"


def _time_format(
    model: Path, art: Path, feeds: dict[str, np.ndarray], ref: list[np.ndarray], dense: Any, budget_s: float
) -> dict[str, Any]:
    spin, nospin = sparsec_session(art, spinning=True), sparsec_session(art, spinning=False)
    err = max_error(spin.run(None, feeds), ref)
    fns = {"ort": runner(dense, feeds), "spin": runner(spin, feeds), "nospin": runner(nospin, feeds)}
    t = interleaved(fns, budget_s=budget_s, sample_ms=0.0)
    ort_ms = t["ort"]["median_ms"]
    return {
        "ort_ms": ort_ms,
        "sparsec_ms": t["spin"]["median_ms"],
        "sparsec_nospin_ms": t["nospin"]["median_ms"],
        "ratio": ort_ms / t["spin"]["median_ms"],
        "ratio_nospin": ort_ms / t["nospin"]["median_ms"],
        "max_rel_error": err,
        "timing": t,
    }


def _one_pruning(
    pattern: str, fmts: tuple[str, ...], deepsparse: bool, say: Say, budget_s: float
) -> list[dict[str, Any]]:
    import onnx

    from sparsec.verify import random_feeds

    from .deepsparse_peer import run_deepsparse

    base = {"model": "paraphrase-MiniLM-L3", "pruning": pattern, "seq": SEQ}
    try:
        model = pruned_model(pattern, say)
    except Exception as e:
        say(f"{pattern}: FAILED: {_first_line(e)}")
        return [{**base, "error": _first_line(e)}]
    arts: dict[str, tuple[Path, str] | str] = {}
    for fmt in fmts:
        try:
            arts[fmt] = compiled(model, fmt, say)
        except Exception as e:
            say(f"{pattern} --format {fmt}: compile FAILED: {_first_line(e)}")
            arts[fmt] = f"compile: {_first_line(e)}"
    results: list[dict[str, Any]] = []
    for batch in BATCHES:
        feeds = random_feeds(onnx.load(str(model)), {"batch_size": batch, "sequence_length": SEQ}, seed=batch)
        dense = dense_session(model)
        ref = dense.run(None, feeds)
        ds: dict[str, Any] = {"status": "n/a (--no-deepsparse)"}
        if deepsparse:
            ds_busy = wait_quiet(say)
            ds = {**run_deepsparse(model, feeds, budget_s=budget_s), "busy": ds_busy}
            say(f"{pattern} b{batch} deepsparse: {ds.get('deepsparse_ms', ds['status'])}")
        for fmt, art in arts.items():
            row: dict[str, Any] = {**base, "batch": batch, "format": fmt, "deepsparse": ds}
            if isinstance(art, str):
                results.append({**row, "error": art})
                continue
            try:
                busy = wait_quiet(say)
                results.append(
                    {**row, "chosen": art[1], "busy": busy, **_time_format(model, art[0], feeds, ref, dense, budget_s)}
                )
            except Exception as e:
                say(f"{pattern} b{batch} {fmt}: FAILED: {_first_line(e)}")
                results.append({**row, "error": _first_line(e)})
                continue
            r = results[-1]
            say(
                f"{pattern} b{batch} {fmt:<7} ort {r['ort_ms']:.2f} ms  sparsec {r['sparsec_ms']:.2f}"
                f" / nospin {r['sparsec_nospin_ms']:.2f} ms  err {r['max_rel_error']:.1e}"
            )
    return results


def run_e2e(deepsparse: bool, say: Say, budget_s: float = 6.0, quick: bool = False) -> list[dict[str, Any]]:
    """One row per (pruning, batch, sparsec format); DeepSparse once per (pruning, batch)."""
    results: list[dict[str, Any]] = []
    for pattern, fmts in PRUNINGS.items():
        results += _one_pruning(pattern, fmts[:1] if quick else fmts, deepsparse, say, budget_s)
    return results
