"""Calibrate the x86 cost model: time every kernel preset against ORT's dense MatMul and fit its constants.

Run: ``python -m sparsec.passes.calibrate [--quick] [--out PATH] [--raw PATH]`` on the machine the models will run
on (about 6 minutes on 2 cores, ``--quick`` about 1); it replaces the host ISA's table in ``cost_data/x86.json``
and keeps the other ISAs' tables. ``--presets P,...`` times only those presets and updates only their entries (and
their family's) in the host ISA's table, its ``source`` extended: how the int8 presets (integer layers, CPUs with
AVX-512 VNNI: their kernels take a uint8 X and its zero point) joined a table calibrated before them.

For the host ISA, every format preset the x86 target has a kernel for (csr, bsr:RxC, nm:N:M; the kernel variant the
compiler picks by default) is built over a grid of layer shapes and densities (N:M at its own pattern density) --
all kernels of one shape in ONE library, compiling is the slow part -- and timed through tvm-ffi calls at M = 1, 16,
128 and 1024, interleaved with ORT's dense MatMul (same threads, ORT's default spinning as in a model, a pause after
it so its idle workers do not slow the TVM kernels timed next, pre-bound inputs and outputs; with spinning off, as
until 2026-12-07, dense ran up to 2x slow: calibrate_measure.bound_session). Each point is the fastest of a few pass
medians taken minutes apart (whole groups of functions run 1.3-1.5x slower for a while on this VM, other processes
or not; a pass during which other processes were busy is re-timed). Dense times are reduced by the per-call overhead
ORT's Python ``run`` has beyond a tvm-ffi call, so both sides carry the same call overhead.

Per (format key, bucket) the constants of ``t_us = M * (a * stored + b * N) / 1000 + c`` are fitted by
non-negative least squares on relative error, for each preset and for each family ("csr", "bsr", "nm": all its
presets pooled, the fallback for presets without their own entry). The table keeps the command, date, CPU and
threads in ``source``, the kernel variant each preset was timed with in ``variants``, and the fit quality
(median absolute relative error per key and bucket, and the worst point) in ``fit``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sparsec.errors import SparsecError

from .calibrate_fit import BUCKETS, fit_table, speedup_table, write
from .calibrate_measure import Group, call_overheads, group_rows, make_cases, make_group, pass_spread, time_group
from .cost_model import DATA_DIR

SHAPES = ((384, 384), (384, 1536), (1536, 384), (768, 768), (768, 3072))  # (K, N)
DENSITIES = (0.05, 0.1, 0.2, 0.4)
QUICK_SHAPES = ((384, 384), (768, 768), (768, 3072))
QUICK_DENSITIES = (0.05, 0.1, 0.4)
ROUNDS, QUICK_ROUNDS = 9, 5  # interleaved samples per function and pass (the median is kept)
PASSES, QUICK_PASSES = 3, 1  # passes over all groups, apart in time (the fastest pass median is kept)
THREADS = 2


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def calibrate(
    quick: bool, threads: int, command: str, say: Callable[[str], None], only: tuple[str, ...] = ()
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Measure and fit on this host: (the cost-data JSON for its ISA, the raw measurements); ``command`` goes into
    the table's ``source``."""
    os.environ["TVM_NUM_THREADS"] = str(threads)  # read when TVM's pool starts, i.e. at the first kernel call
    import tvm

    from sparsec.formats import get_format, integer_presets
    from sparsec.layer import Kernel
    from sparsec.targets.simd.table import choose, supported_presets
    from sparsec.targets.x86.target import X86Target

    target = X86Target()
    vw = target.vector_width
    presets = supported_presets(vw, target.table) + [p for p in integer_presets() if target.supports(p)]
    if only:
        missing = [p for p in only if p not in presets]
        if missing:
            raise SparsecError(f"--presets {','.join(missing)}: no kernel on this host (presets: {', '.join(presets)})")
        presets = list(only)
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
                arrays = tuple(get_format(c.fmt).array_specs(c.packed))
                # the default variant: what the compiler builds
                specs.append(Kernel(c.symbol, c.fmt, k, n, arrays, packed=c.packed))
                variants[c.fmt] = choose(specs[-1], vw, target.table).name
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
        f"(TVM_NUM_THREADS={threads}, ORT intra-op {threads}, spinning); {len(shapes)} shapes; "
        f"per point the fastest of {passes} pass median(s) of {rounds} interleaved samples (passes differ by "
        f"median {pass_spread(groups):.1%}); dense times less {extra:.2f} us (ORT run overhead beyond a tvm-ffi call: "
        f"{overhead['ort']:.2f} vs {overhead['tvm']:.2f} us); other processes used median "
        f"{statistics.median(loads):.0%} / max {max(loads):.0%} of the CPUs while timing; "
        f"{time.perf_counter() - start:.0f} s"
    )
    say(source)
    data = {"source": source, "table": table, "fit": fit, "variants": variants}
    return data, rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer shapes, densities and samples (about 2 minutes)")
    ap.add_argument("--out", type=Path, default=DATA_DIR / "x86.json", help="cost-data JSON to write")
    ap.add_argument("--raw", type=Path, default=None, help="also write every measurement to this JSON file")
    ap.add_argument("--threads", type=int, default=THREADS, help="TVM and ORT intra-op threads")
    ap.add_argument("--presets", default="", help="only these presets (comma-separated), merged into the table")
    args = ap.parse_args(argv)
    from sparsec.targets.x86.target import X86Target

    def say(msg: str) -> None:
        print(msg, flush=True)

    command = " ".join(["python -m sparsec.passes.calibrate", *(sys.argv[1:] if argv is None else argv)])
    only = tuple(p for p in args.presets.split(",") if p)
    data, rows = calibrate(args.quick, args.threads, command, say, only)
    write(args.out, X86Target().isa, data, merge=bool(only))
    if args.raw:
        args.raw.write_text(json.dumps(rows, indent=1) + "\n")
    say(speedup_table(rows, 0.1))
    errors = ", ".join(f"{key} {v['all']:.1%}" for key, v in data["fit"].items())
    say(f"fit: median |relative error| per key over all buckets: {errors}")
    say(f"wrote {args.out}")


if __name__ == "__main__":
    main()
