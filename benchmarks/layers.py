"""Layer sweep: one MatMul with a constant sparse weight, ORT dense vs the sparsec artifact, per M, K x N, pattern.

Each (K, N, pattern) is compiled once (M is symbolic) with the format forced to match the pattern and, with
``auto``, once more with ``--format auto``; every M is then timed interleaved against ORT on the original model.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

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
from .patterns import Pattern, make_weight, sweep_patterns

MS = (1, 16, 128)
SHAPES = ((384, 384), (384, 1536), (1536, 384), (768, 3072), (3072, 768))
QUICK_MS = (1, 128)
QUICK_SHAPES = ((384, 1536), (1536, 384))
Say = Callable[[str], None]


def one_layer_model(w: np.ndarray) -> onnx.ModelProto:
    """x[M, K] @ B[K, N] with B = W.T constant; M symbolic."""
    n, k = w.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")],
        "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["M", n])],
        initializer=[numpy_helper.from_array(np.ascontiguousarray(w.T), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sparsec-bench")
    model.ir_version = 8
    return model


def build(k: int, n: int, p: Pattern, fmt: str, say: Say) -> tuple[Path, Path, dict[str, Any]]:
    """The model and its artifact, reused from .cache/bench while the compiler sources are unchanged."""
    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions

    d = CACHE / "layers" / source_digest() / f"{k}x{n}_{p.slug}"
    model = d / "model.onnx"
    art = d / f"{fmt.replace(':', '-')}.sparsec"
    d.mkdir(parents=True, exist_ok=True)
    if not model.is_file():
        onnx.save(one_layer_model(make_weight(p, n, k)), str(model))
    info_file = art / "manifest.json"
    if info_file.is_file():
        import json

        return model, art, {"layers": json.loads(info_file.read_text())["layers"], "compile_s": None}
    shutil.rmtree(art, ignore_errors=True)
    say(f"compiling {k}x{n} {p.name} --format {fmt}")
    t0 = time.perf_counter()
    res = compile_model(model, art, CompileOptions(target="x86", format=fmt, verify=False))
    return model, res.artifact, {"layers": res.layers, "compile_s": time.perf_counter() - t0}


def _chosen(layers: list[dict[str, Any]]) -> str:
    return ",".join(str(la.get("format")) for la in layers) or "?"


def time_layer(model: Path, art: Path, ms: tuple[int, ...], budget_s: float) -> list[dict[str, Any]]:
    dense, sparse = dense_session(model), sparsec_session(art)
    k = onnx.load(str(model)).graph.input[0].type.tensor_type.shape.dim[1].dim_value
    rows = []
    for m in ms:
        feeds = {"x": np.random.default_rng(m).standard_normal((m, k)).astype(np.float32)}
        err = max_error(sparse.run(None, feeds), dense.run(None, feeds))
        fns = {"ort": runner(dense, feeds), "sparsec": runner(sparse, feeds)}
        t = interleaved(fns, budget_s=budget_s, min_samples=9, sample_ms=20.0)
        rows.append(
            {
                "M": m,
                "ort_ms": t["ort"]["median_ms"],
                "sparsec_ms": t["sparsec"]["median_ms"],
                "ratio": t["ort"]["median_ms"] / t["sparsec"]["median_ms"],
                "max_rel_error": err,
                "timing": t,
            }
        )
    return rows


def run_layers(quick: bool, auto: bool, say: Say, budget_s: float = 0.6) -> list[dict[str, Any]]:
    """One result row per (K, N, pattern, format, M); failures become rows with an ``error``."""
    ms = QUICK_MS if quick else MS
    shapes = QUICK_SHAPES if quick else SHAPES
    patterns = sweep_patterns()
    if quick:
        patterns = [p for p in patterns if p.name in ("unstructured 90%", "block 16x1 90%", "2:4")]
    results: list[dict[str, Any]] = []
    for k, n in shapes:
        for p in patterns:
            forced: list[dict[str, Any]] = []
            for fmt in [p.format, "auto"] if auto else [p.format]:
                base = {"K": k, "N": n, "pattern": p.name, "format": fmt}
                try:
                    model, art, info = build(k, n, p, fmt, say)
                    chosen = _chosen(info["layers"])
                    if fmt == "auto" and chosen == p.format and forced:  # same kernel: reuse the forced timings
                        results += [{**r, **base, "chosen": chosen, "reused": True} for r in forced]
                        continue
                    busy = wait_quiet(say, interval_s=0.25)
                    for row in time_layer(model, art, ms, budget_s):
                        results.append({**base, "chosen": chosen, "compile_s": info["compile_s"], "busy": busy, **row})
                        if fmt != "auto":
                            forced.append(results[-1])
                        say(
                            f"{k}x{n} {p.name:<18} {fmt:<9} M={row['M']:<4} ort {row['ort_ms']:.4f} ms"
                            f"  sparsec {row['sparsec_ms']:.4f} ms  x{row['ratio']:.2f}"
                        )
                except Exception as e:  # a failing config is reported, not fatal
                    msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                    say(f"{k}x{n} {p.name} {fmt}: FAILED: {msg}")
                    results.append({**base, "error": f"{type(e).__name__}: {msg}"})
    return results
