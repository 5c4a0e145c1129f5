"""Calibration measurements: the timed layers, ORT's dense reference, quiet-machine waits and interleaved groups.

Used by ``passes/calibrate.py`` (the cost model) and ``passes/tune.py`` (``--tune``).
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sparsec.timing import GAP_S, TVM_GAP_S

if TYPE_CHECKING:
    import onnx

    from sparsec.targets.base import Target

INT8_ZERO_POINT = 128  # the activation zero point int8 kernels are timed with
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


def make_cases(presets: list[str], shapes: tuple[tuple[int, int], ...], densities: tuple[float, ...]) -> list[Case]:
    """The sparse layers of one calibration run, packed (N:M once per shape, at its pattern density)."""
    from sparsec.formats import get_format

    rng = np.random.default_rng(0)
    out = []
    for (k, n), fmt in itertools.product(shapes, presets):
        f: Any = get_format(fmt)
        nm = f.family == "nm"
        for d in (f.n / f.m,) if nm else densities:
            w = f.random(n, k, 1.0 if nm else d, rng)  # N:M: every group full
            packed = f.pack(w)
            sym = f"k{k}_n{n}_{fmt.replace(':', '_')}_d{round(d * 1000):04d}"
            out.append(Case(fmt, k, n, d, f.nnz_stored(packed), sym, w, packed))
    return out


def dense_runner(k: int, n: int, m: int, threads: int) -> Callable[[], object]:
    """ORT's MatMul Y = X @ W (constant W, dynamic M) with X and Y pre-bound: one call runs the layer once."""
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
    run, _ = bound_session(model, rng.standard_normal((m, k)).astype(np.float32), (m, n), threads)
    return run


def int8_dense_runner(w: np.ndarray, m: int, threads: int) -> Callable[[], object]:
    """ORT's int8 path for an integer-valued W[N, K] as quantize_dynamic writes it (DynamicQuantizeLinear,
    MatMulInteger, Cast, Mul by the scales; ORT fuses them into DynamicQuantizeMatMul), from a float32 X."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    n, k = w.shape
    b = np.ascontiguousarray(np.clip(w.T, -128, 127)).astype(np.int8)
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["X"], ["Xq", "Xs", "Xz"]),
        helper.make_node("MatMulInteger", ["Xq", "B", "Xz"], ["A"]),
        helper.make_node("Cast", ["A"], ["Af"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["Xs", "Bs"], ["S"]),
        helper.make_node("Mul", ["Af", "S"], ["Y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])],
        [numpy_helper.from_array(b, "B"), numpy_helper.from_array(np.array(0.01, np.float32), "Bs")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    run, _ = bound_session(model, rng.standard_normal((m, k)).astype(np.float32), (m, n), threads)
    return run


def bound_session(
    model: onnx.ModelProto, x: np.ndarray, y_shape: tuple[int, ...], threads: int, y_dtype: Any = np.float32
) -> tuple[Callable[[], object], Any]:
    """A one-layer ORT session (CPU EP, ``threads`` intra-op threads, ORT's default spinning: how a model's dense
    layers run) with input ``X`` bound to ``x`` and output ``Y`` to a buffer of ``y_shape``: (one call runs it once,
    the output OrtValue). Whoever times TVM kernels next to it pauses ``timing.GAP_S`` after it so that
    its spinning workers are idle by then.

    Not spinning off (as until 2026-12-07): with blocking workers ORT's MatMul ran at about half speed whenever the
    process had paused before it, i.e. in every interleaved sample (AMD EPYC Zen 4 VM, 2 threads, 384x1536,
    interleaved with a csr kernel: M=128 1327-1356 vs 691-771 us spinning, M=16 191 vs 90-100, M=1024 11192 vs
    5753-6129), which made dense look up to 2x slower than it runs in a model."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    binding = sess.io_binding()
    xv = ort.OrtValue.ortvalue_from_numpy(x)
    yv = ort.OrtValue.ortvalue_from_numpy(np.zeros(y_shape, y_dtype))
    binding.bind_ortvalue_input("X", xv)
    binding.bind_ortvalue_output("Y", yv)
    return (lambda: sess.run_with_iobinding(binding)), yv


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


def call_overheads(folder: Path, target: Target, threads: int) -> dict[str, float]:
    """Microseconds of a trivial 1x1 ORT MatMul run and of a trivial tvm-ffi kernel call (fastest of 3 medians).

    Their difference is what ORT's Python-side ``run`` costs beyond a tvm-ffi call (about 2 us here); it is taken
    off the dense times so both sides carry the same per-call overhead, as a MatMul node and a sparse node of one
    ORT graph roughly do.
    """
    import tvm

    from sparsec.formats import get_format
    from sparsec.layer import Kernel
    from sparsec.timing import interleaved

    w = np.zeros((16, 16), np.float32)
    w[0, 0] = 1.0
    f = get_format("csr")
    packed = f.pack(w)
    target.build([Kernel("trivial", "csr", 16, 16, tuple(f.array_specs(packed)), packed=packed)], folder / "trivial.so")
    f = tvm.runtime.load_module(str(folder / "trivial.so"))["trivial"]
    args = [
        tvm.runtime.tensor(a) for a in (np.ones((1, 16), np.float32), *packed.values(), np.zeros((1, 16), np.float32))
    ]
    fns = {"ort": dense_runner(1, 1, 1, threads), "tvm": lambda: f(*args)}
    out = {name: math.inf for name in fns}
    for _ in range(3):  # the fastest of 3 medians: a disturbed block only makes calls slower
        wait_quiet(5.0)
        gaps = {"ort": GAP_S, "tvm": TVM_GAP_S}
        res = interleaved(fns, budget_s=0.0, min_samples=11, max_samples=11, gap_s=0.0, gaps=gaps)
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

    from sparsec.formats import family

    k, n = cases[0].k, cases[0].n
    x = np.random.default_rng(m).standard_normal((m, k)).astype(np.float32)
    x8 = np.random.default_rng(m).integers(0, 256, (m, k)).astype(np.uint8)  # int8 kernels: uint8 X, zero point
    xt, yt = tvm.runtime.tensor(x), tvm.runtime.tensor(np.zeros((m, n), np.float32))
    x8t, zpt = tvm.runtime.tensor(x8), tvm.runtime.tensor(np.array([INT8_ZERO_POINT], np.uint8))
    fns: dict[str, Callable[[], object]] = {"dense": dense_runner(k, n, m, threads)}
    for c in cases:
        assert c.packed is not None and c.w is not None
        arrays = [tvm.runtime.tensor(a) for a in c.packed.values()]
        f = lib[c.symbol]
        int8 = family(c.fmt) == "int8"
        args = [x8t, *arrays, zpt] if int8 else [xt, *arrays]
        f(*args, yt)
        ref = (x8.astype(np.float64) - INT8_ZERO_POINT if int8 else x.astype(np.float64)) @ c.w.T.astype(np.float64)
        err = np.abs(yt.numpy() - ref).max() / max(np.abs(ref).max(), 1.0)
        if not err < 1e-4:
            raise AssertionError(f"{c.symbol} M={m}: max relative error {err:.1e}")
        fns[c.symbol] = functools.partial(f, *args, yt)
    return Group(k, n, m, cases, fns)


def time_group(g: Group, rounds: int, quiet_s: float, retries: int = 2) -> None:
    """One pass over the group: ``rounds`` interleaved samples per function, medians appended to ``g.passes``.

    Dense first in each round, a pause so ORT's spinning workers are idle, then every kernel (one TVM pool: no
    pause between them), then a pause so TVM's spinning workers sleep before ORT runs again. A pass during which
    other processes took more than ``QUIET`` of the CPUs is repeated (up to ``retries`` times; the least disturbed
    attempt is kept).
    """
    from sparsec.timing import interleaved

    best: tuple[dict[str, float], float] | None = None
    gaps = {"dense": GAP_S, g.cases[-1].symbol: TVM_GAP_S}
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
