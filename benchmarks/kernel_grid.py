"""The kernel grid of issue 14: each sparse kernel alone against ORT's dense MatMul, with achieved rates and the
machine's roofs.

Run: ``python -m benchmarks.kernel_grid [--ms 1,16,128,1024] [--patterns unstructured:0.9,block:4x4:0.9,...]``.

Per (pattern, K x N): every x86 kernel variant of the pattern's format is built once (M is symbolic) and checked
against float64 numpy; then, per M, ORT's MatMul (constant B, dynamic M, X and Y bound, 2 intra-op threads with
ORT's default spinning: with it off, ORT ran up to 2x slow here, see passes/calibrate_measure.bound_session) and
every variant are timed interleaved. Reported: the default variant (what ``--format`` without ``--tune`` builds),
the best variant (what ``--tune`` would keep), their speedups over ORT, and the best one's useful GFLOP/s
(2 * M * nonzeros) and GB/s (X, Y and the packed weight once), each beside its roof: ORT's own best GFLOP/s in the
run (MLAS runs close to the FMA peak) and a measured DRAM copy bandwidth. The largest packed weight of the grid
(768x3072 at 20% density, csr) is 3.8 MB and stays in the 2 cores' L2 between calls, so GB/s above the copy
bandwidth at M=1 is cache bandwidth, not a fault: the kernels are compute- and load-port-bound, not DRAM-bound.

``--markdown FILE`` prints the tables of an earlier run's JSON without measuring again.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import CACHE, THREADS, set_tvm_threads
from .patterns import Pattern, make_weight
from .report import machine, machine_md

SHAPES = ((384, 1536), (1536, 384), (768, 3072), (3072, 768))
MS = (1, 16, 128, 1024)
PATTERNS = (
    "unstructured:0.9",
    "block:4x4:0.9",
    "block:1x16:0.9",
    "block:16x1:0.9",
    "unstructured:0.8",
    "block:4x4:0.8",
    "block:1x16:0.8",
    "block:16x1:0.8",
)


def parse_pattern(text: str) -> Pattern:
    kind, *rest = text.split(":")
    if kind == "unstructured":
        return Pattern("unstructured", float(rest[0]))
    r, c = (int(v) for v in rest[0].split("x"))
    return Pattern("block", float(rest[1]), r, c)


def memory_bandwidth_gbs() -> float:
    """A 256 MiB copy (read + write), best of 3."""
    a = np.ones(64 << 20, np.float32)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t0)
    return 2 * a.nbytes / best / 1e9


def _layer(p: Pattern, k: int, n: int, tmp: Path) -> dict[str, Any]:
    """The weight, its packed arrays and the library of every variant of its format."""
    import tvm

    from sparsec.formats import get_format
    from sparsec.layer import Kernel
    from sparsec.targets.x86.target import X86Target

    target = X86Target()
    w = make_weight(p, n, k)
    f = get_format(p.format)
    packed = f.pack(w)
    arrays = tuple(f.array_specs(packed))
    variants = target.variants(p.format)
    kernels = [Kernel(f"k_{v}", p.format, k, n, arrays, variant=v, packed=packed) for v in variants]
    path = tmp / f"{p.slug}_{k}x{n}.so"
    target.build(kernels, path)
    return {"w": w, "packed": packed, "variants": variants, "lib": tvm.runtime.load_module(str(path))}


def _time(layer: dict[str, Any], m: int, budget_s: float) -> dict[str, float]:
    """Median microseconds of ORT dense and of every variant at M = ``m`` (each checked once first)."""
    import tvm

    from sparsec.passes.calibrate_measure import dense_runner
    from sparsec.timing import TVM_GAP_S, interleaved

    w = layer["w"]
    n, k = w.shape
    x = np.random.default_rng(m).standard_normal((m, k)).astype(np.float32)
    xt, yt = tvm.runtime.tensor(x), tvm.runtime.tensor(np.zeros((m, n), np.float32))
    args = [tvm.runtime.tensor(a) for a in layer["packed"].values()]
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    fns: dict[str, Any] = {"dense": dense_runner(k, n, m, THREADS)}
    for v in layer["variants"]:
        fn = layer["lib"][f"k_{v}"]
        fn(xt, *args, yt)
        err = np.abs(yt.numpy() - ref).max() / max(np.abs(ref).max(), 1.0)
        if not err < 1e-4:
            raise AssertionError(f"variant {v}: max relative error {err:.1e}")
        fns[v] = lambda fn=fn: fn(xt, *args, yt)
    res = interleaved(fns, budget_s=budget_s, min_samples=7, gaps={v: TVM_GAP_S for v in layer["variants"]})
    return {name: r["median_ms"] * 1e3 for name, r in res.items()}


def run(patterns: list[Pattern], ms: tuple[int, ...], budget_s: float, say: Any) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="sparsec-grid-") as tmp:
        for p in patterns:
            for k, n in SHAPES:
                layer = _layer(p, k, n, Path(tmp))
                nnz = int(np.count_nonzero(layer["w"]))
                weight_bytes = sum(a.nbytes for a in layer["packed"].values())
                for m in ms:
                    t = _time(layer, m, budget_s)
                    default = layer["variants"][0]
                    best = min(layer["variants"], key=lambda v: t[v])
                    flops = 2 * m * nnz
                    moved = 4 * m * (k + n) + weight_bytes
                    row = {
                        "pattern": p.name, "format": p.format, "k": k, "n": n, "m": m, "nnz": nnz,
                        "dense_us": t["dense"], "default": default, "default_us": t[default], "best": best,
                        "best_us": t[best], "times_us": t, "dense_gflops": 2 * m * k * n / t["dense"] / 1e3,
                        "gflops": flops / t[best] / 1e3, "gbs": moved / t[best] / 1e3,
                    }  # fmt: skip
                    rows.append(row)
                    say(
                        f"{p.name:<18} {k}x{n} M={m:<5} dense {t['dense']:9.1f} us | {default} "
                        f"{t['dense'] / t[default]:5.2f}x | best {best} {t['dense'] / t[best]:5.2f}x "
                        f"({row['gflops']:.0f} GF/s, {row['gbs']:.0f} GB/s)"
                    )
    return rows


def markdown(rows: list[dict[str, Any]], peak_gflops: float, bw_gbs: float) -> str:
    head = (
        "| pattern | K x N | M | ORT dense us | default variant | speedup | best variant (--tune) | speedup "
        f"| GFLOP/s | % of {peak_gflops:.0f} | GB/s | % of {bw_gbs:.0f} |\n" + "|---" * 12 + "|\n"
    )
    lines = []
    for r in rows:
        lines.append(
            f"| {r['pattern']} | {r['k']}x{r['n']} | {r['m']} | {r['dense_us']:.1f} | {r['default']} | "
            f"{r['dense_us'] / r['default_us']:.2f}x | {r['best']} | {r['dense_us'] / r['best_us']:.2f}x | "
            f"{r['gflops']:.0f} | {r['gflops'] / peak_gflops:.0%} | {r['gbs']:.0f} | {r['gbs'] / bw_gbs:.0%} |"
        )
    return head + "\n".join(lines)


def summary(rows: list[dict[str, Any]], peak_gflops: float) -> str:
    """One line per (pattern, M): the default variant's speedup on each shape and the best share of peak."""
    shapes = list(dict.fromkeys((r["k"], r["n"]) for r in rows))
    head = (
        "| pattern | M | "
        + " | ".join(f"{k}x{n}" for k, n in shapes)
        + " | best GFLOP/s (% of peak) |\n"
        + "|---" * (len(shapes) + 3)
        + "|\n"
    )
    lines = []
    for key in dict.fromkeys((r["pattern"], r["m"]) for r in rows):
        cells = {(r["k"], r["n"]): r for r in rows if (r["pattern"], r["m"]) == key}
        ratios = [f"{c['dense_us'] / c['default_us']:.2f}x" if (c := cells.get(s)) else "" for s in shapes]
        best = max(c["gflops"] for c in cells.values())
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(ratios) + f" | {best:.0f} ({best / peak_gflops:.0%}) |")
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.kernel_grid", description=__doc__.splitlines()[0])
    ap.add_argument("--ms", default=",".join(map(str, MS)))
    ap.add_argument("--patterns", default=",".join(PATTERNS))
    ap.add_argument("--budget", type=float, default=1.5, help="seconds of interleaved timing per (layer, M)")
    ap.add_argument("-o", "--output", type=Path, default=CACHE / "kernel_grid.json")
    ap.add_argument("--markdown", type=Path, metavar="FILE", help="print the tables of a saved run and exit")
    a = ap.parse_args(argv)
    if a.markdown:
        print(report(json.loads(a.markdown.read_text())))
        return 0
    set_tvm_threads(THREADS)

    def say(msg: str) -> None:
        print(f"[grid] {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    bw = memory_bandwidth_gbs()
    rows = run([parse_pattern(p) for p in a.patterns.split(",")], tuple(int(v) for v in a.ms.split(",")), a.budget, say)
    peak = max(r["dense_gflops"] for r in rows)
    out = {"machine": machine(), "threads": THREADS, "peak_gflops": peak, "bandwidth_gbs": bw, "rows": rows}
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps(out, indent=1))
    print(report(out))
    print(f"\n({time.perf_counter() - t0:.0f} s; raw numbers in {a.output})")
    return 0


def report(out: dict[str, Any]) -> str:
    peak, bw = out["peak_gflops"], out["bandwidth_gbs"]
    return (
        f"Machine: {machine_md(out['machine'])}; {out['threads']} threads\n"
        f"Roofs: ORT dense best {peak:.0f} GFLOP/s in this run; DRAM copy {bw:.1f} GB/s\n\n"
        "Default variant's speedup over ORT dense, per shape:\n\n"
        f"{summary(out['rows'], peak)}\n\nEvery cell:\n\n{markdown(out['rows'], peak, bw)}"
    )


if __name__ == "__main__":
    sys.exit(main())
