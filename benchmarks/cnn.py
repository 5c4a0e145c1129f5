"""``python -m benchmarks.cnn``: the generated CNNs (models/cnn.py) pruned with ``sparsec prune``, ORT dense vs sparsec.

Each model is pruned (magnitude, unstructured by default) and compiled with ``--format auto``; ORT's baseline runs
the same pruned model (dense kernels, as exported: symbolic batch). Timing is interleaved in one process
(sparsec.timing); the table gives medians and the ratio ORT / sparsec, plus the compiled model's max relative error
against ORT on the same inputs, and how busy other processes kept the CPUs just before (this machine is shared:
numbers taken while it is busy are not comparable).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import (
    CACHE,
    THREADS,
    dense_session,
    interleaved,
    max_error,
    runner,
    set_tvm_threads,
    source_digest,
    sparsec_session,
    wait_quiet,
)
from .report import md_table

Say = Callable[[str], None]
MODELS = ("mobilenet_v1", "mobilenet_v2", "resnet")


def _say(msg: str) -> None:
    print(f"[cnn] {msg}", file=sys.stderr, flush=True)


def prepared(name: str, pattern: str, resolution: int, say: Say, tune: bool = False) -> tuple[Path, Path, str]:
    """(pruned model, compiled artifact, chosen formats), cached while the compiler sources are unchanged.
    ``tune``: compiled with ``--tune`` (every conv timed against ORT's at batch 1) instead of the cost model alone."""
    from models.cnn import GENERATORS, save
    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions
    from sparsec.prune import parse_pattern, prune_model

    d = CACHE / "cnn" / source_digest() / f"{name}_{resolution}_{pattern.replace(':', '_')}"
    model, art = d / "model.onnx", d / ("tune.sparsec" if tune else "auto.sparsec")
    if not model.is_file():
        say(f"generating {name} ({resolution}x{resolution}) and pruning --pattern {pattern}")
        pruned, _ = prune_model(GENERATORS[name](resolution=resolution), parse_pattern(pattern))
        save(pruned, model)
    if not (art / "manifest.json").is_file():
        shutil.rmtree(art, ignore_errors=True)
        say(f"compiling {name}")
        t0 = time.perf_counter()
        opts = CompileOptions(target="x86", format="auto", verify=False, tune=tune, dims={"batch": 1})
        compile_model(model, art, opts)
        say(f"compiled in {time.perf_counter() - t0:.1f} s")
    layers = json.loads((art / "manifest.json").read_text())["layers"]
    convs = [la for la in layers if la["op"] == "Conv"]
    sparse = [la for la in convs if la["format"] != "dense"]
    kinds = "+".join(sorted({la["format"] for la in sparse})) or "dense"
    return model, art, f"{len(sparse)}/{len(convs)} convs sparse ({kinds})"


def bench_one(
    name: str, pattern: str, resolution: int, batch: int, budget_s: float, say: Say, tune: bool = False
) -> dict[str, Any]:
    import numpy as np

    model, art, chosen = prepared(name, pattern, resolution, say, tune)
    feeds = {"image": np.random.default_rng(batch).standard_normal((batch, 3, resolution, resolution), np.float32)}
    dense, sparse = dense_session(model), sparsec_session(art)
    err = max_error(sparse.run(None, feeds), dense.run(None, feeds))
    busy = wait_quiet(say)
    t = interleaved({"ort": runner(dense, feeds), "sparsec": runner(sparse, feeds)}, budget_s=budget_s,
                    sample_ms=0.0)  # fmt: skip
    row = {"model": name, "pruning": pattern + (" --tune" if tune else ""), "resolution": resolution, "batch": batch,
           "chosen": chosen,
           "ort_ms": t["ort"]["median_ms"], "sparsec_ms": t["sparsec"]["median_ms"], "max_rel_error": err,
           "busy": busy}  # fmt: skip
    row["ratio"] = row["ort_ms"] / row["sparsec_ms"]
    say(f"{name} {pattern} b{batch}: ort {row['ort_ms']:.2f} ms, sparsec {row['sparsec_ms']:.2f} ms "
        f"({row['ratio']:.2f}x), err {err:.1e}, {chosen}")  # fmt: skip
    return row


def table(rows: list[dict[str, Any]]) -> str:
    header = ["model", "pruning", "batch", "sparse convs", "ORT dense ms", "sparsec ms", "speedup", "max rel err",
              "CPU busy"]  # fmt: skip
    body = [
        [f"{r['model']} {r['resolution']}px", r["pruning"], str(r["batch"]), r["chosen"], f"{r['ort_ms']:.2f}",
         f"{r['sparsec_ms']:.2f}", f"**{r['ratio']:.2f}x**", f"{r['max_rel_error']:.1e}", f"{r['busy']:.0%}"]
        for r in rows
    ]  # fmt: skip
    return md_table(header, body)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.cnn", description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--patterns", default="unstructured:0.8", help="comma-separated sparsec prune patterns")
    ap.add_argument("--batches", default="1")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--budget", type=float, default=6.0, help="seconds of interleaved timing per case")
    ap.add_argument("--tune", action="store_true", help="also a row per case compiled with --tune")
    args = ap.parse_args(argv)
    set_tvm_threads(THREADS)
    rows = []
    for name in args.models.split(","):
        for pattern in args.patterns.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                for tune in (False, True) if args.tune else (False,):
                    rows.append(bench_one(name, pattern, args.resolution, batch, args.budget, _say, tune))
    print(table(rows))


if __name__ == "__main__":
    main()
