"""Calibrate the x86 cost model: time every kernel preset against ORT's dense MatMul and fit its constants.

Run: ``python -m sparsec.passes.calibrate [--quick] [--out PATH] [--raw PATH]`` on the machine the models will run
on (about 6 minutes on 2 cores, ``--quick`` about 1); it replaces the host ISA's table in ``cost_data/x86.json``
and keeps the other ISAs' tables.

For the host ISA, every format preset the x86 target has a kernel for (csr, bsr:RxC, nm:N:M; the kernel variant
the compiler picks by default) is built over a grid of layer shapes and densities (N:M at its own pattern density)
-- all kernels of one shape in ONE library, compiling is the slow part -- and timed through tvm-ffi calls at
M = 1, 16 and 128, interleaved with ORT's dense MatMul (same threads, intra-op spinning off as in sparsec
sessions, pre-bound inputs and outputs). Each point is the fastest of a few pass medians taken minutes apart
(whole groups of functions run 1.3-1.5x slower for a while on this VM, other processes or not; a pass during
which other processes were busy is re-timed). Dense times are reduced by the per-call overhead ORT's Python
``run`` has beyond a tvm-ffi call, so both sides carry the same call overhead.

Per (format key, bucket) the constants of ``t_us = M * (a * stored + b * N) / 1000 + c`` are fitted by
non-negative least squares on relative error, for each preset and for each family ("csr", "bsr", "nm": all its
presets pooled, the fallback for presets without their own entry). The table keeps the command, date, CPU and
threads in ``source``, the kernel variant each preset was timed with in ``variants``, and the fit quality
(median absolute relative error per key and bucket, and the worst point) in ``fit``.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cost_model import DATA_DIR

BUCKETS = (1, 16, 128)
SHAPES = ((384, 384), (384, 1536), (1536, 384), (768, 768), (768, 3072))  # (K, N)
DENSITIES = (0.05, 0.1, 0.2, 0.4)
QUICK_SHAPES = ((384, 384), (768, 768), (768, 3072))
QUICK_DENSITIES = (0.05, 0.1, 0.4)
ROUNDS, QUICK_ROUNDS = 9, 5  # interleaved samples per function and pass (the median is kept)
PASSES, QUICK_PASSES = 3, 1  # passes over all groups, apart in time (the fastest pass median is kept)
THREADS = 2
SPIN_KEY = "session.intra_op.allow_spinning"
TVM_GAP_S = 0.2  # TVM's workers spin after a kernel: pause before ORT's sample (sparsec.timing.TVM_GAP_S)
QUIET = 0.25  # timing waits (a while) until other processes use less than this share of the CPUs, and re-times if not


@dataclass
class Case:
    """One timed sparse layer: a format preset at one shape and density, packed (``w`` is dropped once checked)."""

    fmt: str
    k: int
    n: int
    density: float
    stored: int
    symbol: str = ""
    w: np.ndarray | None = None
    packed: dict[str, np.ndarray] | None = None


def family(fmt: str) -> str:
    """``bsr:16x1`` -> ``bsr``."""
    return fmt.split(":", 1)[0]


def sparse_weight(fmt: str, n: int, k: int, density: float, rng: np.random.Generator) -> np.ndarray:
    """W[n, k] pruned by magnitude to ``fmt``'s structure at ``density`` (N:M: the n largest of every m)."""
    from sparsec.formats import get_format

    w = rng.standard_normal((n, k)).astype(np.float32)
    f = get_format(fmt)
    if family(fmt) == "nm":
        g = w.reshape(n, -1, f.m)
        keep = np.zeros(g.shape, bool)
        np.put_along_axis(keep, np.argsort(-np.abs(g), axis=2)[:, :, : f.n], True, axis=2)
        return (g * keep).reshape(n, k)
    if family(fmt) == "bsr":
        blocks = np.abs(w.reshape(n // f.r, f.r, k // f.c, f.c)).sum(axis=(1, 3))
        keep = blocks >= np.quantile(blocks, 1 - density)
        return w * np.kron(keep, np.ones((f.r, f.c), np.float32))
    return w * (np.abs(w) >= np.quantile(np.abs(w), 1 - density))


def make_cases(presets: list[str], shapes: tuple[tuple[int, int], ...], densities: tuple[float, ...]) -> list[Case]:
    """The sparse layers of one calibration run, packed (N:M once per shape, at its pattern density)."""
    from sparsec.formats import get_format

    rng = np.random.default_rng(0)
    out = []
    for (k, n), fmt in itertools.product(shapes, presets):
        f = get_format(fmt)
        for d in (f.n / f.m,) if family(fmt) == "nm" else densities:
            w = sparse_weight(fmt, n, k, d, rng)
            packed = f.pack(w)
            sym = f"k{k}_n{n}_{fmt.replace(':', '_')}_d{round(d * 1000):04d}"
            out.append(Case(fmt, k, n, d, f.nnz_stored(packed), sym, w, packed))
    return out


def dense_runner(k: int, n: int, m: int, threads: int) -> Callable[[], object]:
    """ORT's MatMul Y = X @ W (constant W, dynamic M) with X and Y pre-bound: one call runs the layer once."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "B"], ["Y"])],
        "layer",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])],
        [numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
    so.add_session_config_entry(SPIN_KEY, "0")
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    binding = sess.io_binding()
    x = ort.OrtValue.ortvalue_from_numpy(rng.standard_normal((m, k)).astype(np.float32))
    y = ort.OrtValue.ortvalue_from_numpy(np.zeros((m, n), np.float32))
    binding.bind_ortvalue_input("X", x)
    binding.bind_ortvalue_output("Y", y)
    return lambda: sess.run_with_iobinding(binding)


def cpu_snapshot() -> tuple[int, int, float]:
    """(jiffies of all CPUs, idle jiffies, CPU seconds of this process's threads so far)."""
    vals = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    own = os.times()
    return sum(vals), vals[3] + (vals[4] if len(vals) > 4 else 0), own.user + own.system


def others_load(before: tuple[int, int, float], after: tuple[int, int, float]) -> float:
    """Share of all CPU time between two snapshots that other processes (or the hypervisor: steal) used."""
    total = after[0] - before[0]
    busy = total - (after[1] - before[1])
    own = (after[2] - before[2]) * os.sysconf("SC_CLK_TCK")
    return min(max((busy - own) / max(total, 1), 0.0), 1.0)


def wait_quiet(max_wait_s: float) -> float:
    """Wait up to ``max_wait_s`` for other processes to use less than ``QUIET`` of the CPUs; the last share seen."""
    start = time.perf_counter()
    while True:
        before = cpu_snapshot()
        time.sleep(0.3)
        load = others_load(before, cpu_snapshot())
        if load <= QUIET or time.perf_counter() - start > max_wait_s:
            return load


def call_overheads(folder: Path, target: Any, threads: int) -> dict[str, float]:
    """Microseconds of a trivial 1x1 ORT MatMul run and of a trivial tvm-ffi kernel call (fastest of 3 medians).

    Their difference is what ORT's Python-side ``run`` costs beyond a tvm-ffi call (about 2 us here); it is taken
    off the dense times so both sides carry the same per-call overhead, as a MatMul node and a sparse node of one
    ORT graph roughly do.
    """
    import tvm

    from sparsec.formats import get_format
    from sparsec.targets.base import KernelSpec
    from sparsec.timing import interleaved

    w = np.zeros((16, 16), np.float32)
    w[0, 0] = 1.0
    packed = get_format("csr").pack(w)
    arrays = tuple((name, tuple(a.shape), str(a.dtype)) for name, a in packed.items())
    target.build([KernelSpec("trivial", "csr", 16, 16, arrays)], folder / "trivial.so")
    f = tvm.runtime.load_module(str(folder / "trivial.so"))["trivial"]
    args = [
        tvm.runtime.tensor(a) for a in (np.ones((1, 16), np.float32), *packed.values(), np.zeros((1, 16), np.float32))
    ]
    fns = {"ort": dense_runner(1, 1, 1, threads), "tvm": lambda: f(*args)}
    out = {name: math.inf for name in fns}
    for _ in range(3):  # the fastest of 3 medians: a disturbed block only makes calls slower
        wait_quiet(5.0)
        res = interleaved(fns, budget_s=0.0, min_samples=11, max_samples=11, gap_s=0.0, gaps={"tvm": TVM_GAP_S})
        out = {name: min(out[name], r["median_ms"] * 1e3) for name, r in res.items()}
    return out


@dataclass
class Group:
    """What is timed together: ORT's dense MatMul and every kernel of one (K, N) shape at one M."""

    k: int
    n: int
    m: int
    cases: list[Case]
    fns: dict[str, Callable[[], object]]
    passes: list[dict[str, float]] = field(default_factory=list)  # per pass: name -> median us
    loads: list[float] = field(default_factory=list)  # per pass: other processes' share of the CPUs meanwhile


def make_group(lib: Any, cases: list[Case], m: int, threads: int) -> Group:
    """The group's callables on fixed inputs, each kernel checked once against numpy first."""
    import tvm

    k, n = cases[0].k, cases[0].n
    x = np.random.default_rng(m).standard_normal((m, k)).astype(np.float32)
    xt, yt = tvm.runtime.tensor(x), tvm.runtime.tensor(np.zeros((m, n), np.float32))
    fns: dict[str, Callable[[], object]] = {"dense": dense_runner(k, n, m, threads)}
    for c in cases:
        assert c.packed is not None and c.w is not None
        args = [tvm.runtime.tensor(a) for a in c.packed.values()]
        f = lib[c.symbol]
        f(xt, *args, yt)
        ref = x.astype(np.float64) @ c.w.T.astype(np.float64)
        err = np.abs(yt.numpy() - ref).max() / max(np.abs(ref).max(), 1.0)
        if not err < 1e-4:
            raise AssertionError(f"{c.symbol} M={m}: max relative error {err:.1e}")
        fns[c.symbol] = lambda f=f, a=(xt, *args, yt): f(*a)
    return Group(k, n, m, cases, fns)


def time_group(g: Group, rounds: int, quiet_s: float, retries: int = 2) -> None:
    """One pass over the group: ``rounds`` interleaved samples per function, medians appended to ``g.passes``.

    Dense first in each round, then every kernel (one TVM pool: no pause between them), then a pause so TVM's
    spinning workers sleep before ORT runs again. A pass during which other processes took more than ``QUIET`` of
    the CPUs is repeated (up to ``retries`` times; the least disturbed attempt is kept).
    """
    from sparsec.timing import interleaved

    best: tuple[dict[str, float], float] | None = None
    gaps = {g.cases[-1].symbol: TVM_GAP_S}
    for _ in range(retries + 1):
        wait_quiet(quiet_s)
        before = cpu_snapshot()
        res = interleaved(g.fns, budget_s=0.0, min_samples=rounds, max_samples=rounds, gap_s=0.0, gaps=gaps)
        load = others_load(before, cpu_snapshot())
        if best is None or load < best[1]:
            best = ({name: r["median_ms"] * 1e3 for name, r in res.items()}, load)
        if load <= QUIET:
            break
    assert best is not None
    g.passes.append(best[0])
    g.loads.append(best[1])


def group_rows(g: Group, dense_extra_us: float) -> list[dict[str, Any]]:
    """One row per function: the fastest of its per-pass medians (disturbances only slow things down), dense less
    ``dense_extra_us``, and the speedup vs dense."""
    base = {"k": g.k, "n": g.n, "m": g.m, "load": round(max(g.loads), 3)}

    def us(name: str) -> float:
        return min(p[name] for p in g.passes)

    def per_pass(name: str) -> list[float]:
        return [round(p[name], 2) for p in g.passes]

    dense_us = max(us("dense") - dense_extra_us, 0.1)
    rows = [{"fmt": "dense", **base, "density": 1.0, "stored": g.k * g.n, "us": dense_us, "passes": per_pass("dense")}]
    for c in g.cases:
        t = us(c.symbol)
        row = {"fmt": c.fmt, **base, "density": c.density, "stored": c.stored, "us": t, "speedup": dense_us / t}
        rows.append(row | {"passes": per_pass(c.symbol)})
    return rows


def pass_spread(groups: list[Group]) -> float:
    """Median over all timed functions of |log| of the ratio between their slowest and fastest pass (0: 1 pass)."""
    spreads = [math.log(max(p[f] for p in g.passes) / min(p[f] for p in g.passes)) for g in groups for f in g.fns]
    return statistics.median(spreads) if spreads else 0.0


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


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def calibrate(
    quick: bool, threads: int, command: str, say: Callable[[str], None]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Measure and fit on this host: (the cost-data JSON for its ISA, the raw measurements); ``command`` goes into
    the table's ``source``."""
    os.environ["TVM_NUM_THREADS"] = str(threads)  # read when TVM's pool starts, i.e. at the first kernel call
    import tvm

    from sparsec.targets.base import KernelSpec
    from sparsec.targets.x86.manifest import choose, supported_presets
    from sparsec.targets.x86.target import X86Target

    target = X86Target()
    vw = target.vector_width
    presets = supported_presets(vw)
    shapes, densities = (QUICK_SHAPES, QUICK_DENSITIES) if quick else (SHAPES, DENSITIES)
    rounds = QUICK_ROUNDS if quick else ROUNDS
    say(f"isa {target.isa} ({target.mcpu}), {threads} threads, presets: {', '.join(presets)}")
    passes = QUICK_PASSES if quick else PASSES
    quiet_s = 5.0 if quick else 20.0
    variants: dict[str, str] = {}
    groups: list[Group] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        overhead = call_overheads(Path(tmp), target, threads)
        extra = max(overhead["ort"] - overhead["tvm"], 0.0)
        say(f"per-call overhead: ORT run {overhead['ort']:.2f} us, tvm-ffi call {overhead['tvm']:.2f} us")
        for k, n in shapes:
            cases = make_cases(presets, ((k, n),), densities)
            specs = []
            for c in cases:
                assert c.packed is not None
                arrays = tuple((name, tuple(a.shape), str(a.dtype)) for name, a in c.packed.items())
                specs.append(KernelSpec(c.symbol, c.fmt, k, n, arrays))  # default variant: what the compiler builds
                variants[c.fmt] = choose(specs[-1], vw).name
            t0 = time.perf_counter()
            path = Path(tmp) / f"k{k}_n{n}.so"
            target.build(specs, path)
            say(f"K={k} N={n}: built {len(specs)} kernels in {time.perf_counter() - t0:.1f} s")
            lib = tvm.runtime.load_module(str(path))
            groups += [make_group(lib, cases, m, threads) for m in BUCKETS]
            for c in cases:
                c.w = None  # checked: only the packed arrays are needed from here on
    for i in range(passes):
        for g in groups:
            t0 = time.perf_counter()
            time_group(g, rounds, quiet_s)
            say(
                f"pass {i + 1}/{passes} K={g.k} N={g.n} M={g.m}: {len(g.fns)} functions in "
                f"{time.perf_counter() - t0:.1f} s, other processes {g.loads[-1]:.0%} of the CPUs"
            )
    rows = [r for g in groups for r in group_rows(g, extra)]
    table, fit = fit_table(rows)
    loads = [x for g in groups for x in g.loads]
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    source = (
        f"{command}; {when}; {cpu_model()} ({target.mcpu}, {target.isa}); {threads} threads "
        f"(TVM_NUM_THREADS={threads}, ORT intra-op {threads}, spinning off); {len(shapes)} shapes; "
        f"per point the fastest of {passes} pass median(s) of {rounds} interleaved samples (passes differ by "
        f"median {pass_spread(groups):.1%}); dense times less {extra:.2f} us (ORT run overhead beyond a tvm-ffi call: "
        f"{overhead['ort']:.2f} vs {overhead['tvm']:.2f} us); other processes used median "
        f"{statistics.median(loads):.0%} / max {max(loads):.0%} of the CPUs while timing; "
        f"{time.perf_counter() - start:.0f} s"
    )
    say(source)
    data = {"source": source, "table": table, "fit": fit, "variants": variants}
    return data, rows


def write(out: Path, isa: str, data: dict[str, Any]) -> None:
    """Store the host ISA's table in ``out``, keeping other ISAs' tables (and their sources) already there."""
    old: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer shapes, densities and samples (about 2 minutes)")
    ap.add_argument("--out", type=Path, default=DATA_DIR / "x86.json", help="cost-data JSON to write")
    ap.add_argument("--raw", type=Path, default=None, help="also write every measurement to this JSON file")
    ap.add_argument("--threads", type=int, default=THREADS, help="TVM and ORT intra-op threads")
    args = ap.parse_args(argv)
    from sparsec.targets.x86.target import X86Target

    def say(msg: str) -> None:
        print(msg, flush=True)

    command = " ".join(["python -m sparsec.passes.calibrate", *(sys.argv[1:] if argv is None else argv)])
    data, rows = calibrate(args.quick, args.threads, command, say)
    write(args.out, X86Target().isa, data)
    if args.raw:
        args.raw.write_text(json.dumps(rows, indent=1) + "\n")
    say(speedup_table(rows, 0.1))
    errors = ", ".join(f"{key} {v['all']:.1%}" for key, v in data["fit"].items())
    say(f"fit: median |relative error| per key over all buckets: {errors}")
    say(f"wrote {args.out}")


if __name__ == "__main__":
    main()
