"""Tuning (``sparsec compile --tune``): measure each layer's candidate formats and kernel variants with its real
packed weight on this host, against ORT's dense MatMul, and keep the fastest (dense included).

Per layer, every format preset the weight fits is a candidate (at most ``TOP`` of them, the best predicted by the
cost model), with every kernel variant the target has for it; all of them are built into ONE library (building is
the slow part), each is checked once against numpy, then they are timed interleaved with ORT's dense MatMul at the
layer's M. Results are cached (``sparsec.cache``) by layer shape, M, sparsity-pattern hash, candidates, target CPU
and toolchain versions, so tuning the same model again measures nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sparsec.errors import SparsecError
from sparsec.formats import family
from sparsec.layer import QLINEAR_OPS, Choice, Kernel, Layer, Tuning
from sparsec.options import CompileOptions, toolchain_versions
from sparsec.targets.base import Progress, Target

from .choose import fits, floats_dense, integer_us, predicted_speedup
from .cost_model import EP_NODE_US, CostModel, absorbed_us, reorder_us
from .layout import settle_layout
from .tune_qlinear import activation_dtype, qlinear_dense_runner

TOP = 4  # candidate formats measured per layer
ROUNDS = 7  # interleaved samples per function (the median is kept)


def pattern_hash(w: np.ndarray) -> str:
    """sha256 of the weight's nonzero mask and shape: what kernel speed depends on (values do not)."""
    mask = np.packbits(np.ascontiguousarray(w) != 0)
    return hashlib.sha256(str(w.shape).encode() + mask.tobytes()).hexdigest()


def candidates(
    layer: Layer, presets: list[str], predicted: Callable[[str], float], variants: Callable[[str], list[str]]
) -> list[str]:
    """``fmt|variant`` entries to measure: the ``TOP`` fitting presets by predicted speedup, every variant of each."""
    fitting = sorted((f for f in presets if not fits(layer, f)), key=predicted, reverse=True)[:TOP]
    return [f"{fmt}|{v}" for fmt in fitting for v in variants(fmt)]


def _measure(
    layer: Layer, entries: list[str], rows: int, target: Target, threads: int, floated: bool = False
) -> dict[str, float]:
    """Median microseconds per call of every entry and of ORT's dense MatMul or Conv (``dense``) at M = ``rows``:
    for an integer layer ORT's integer kernel for it, unless it runs on ORT's float32 one when dense (``floated``)."""
    import tvm

    from sparsec.formats import get_format
    from sparsec.timing import GAP_S, TVM_GAP_S, interleaved

    from .calibrate_measure import INT8_ZERO_POINT, dense_runner, int8_dense_runner
    from .tune_conv import conv_io, dense_conv_runner

    conv = layer.geom is not None  # Conv or ConvInteger
    # int8 kernels take a QDQ MatMul's integers (its weight less the scale), as rewrite packs them
    w8 = layer.qdq.w_int if layer.qdq is not None else layer.w
    specs, packed = [], {}
    for i, entry in enumerate(entries):
        fmt, variant = entry.split("|")
        if fmt not in packed:  # the variants of one format share its packed arrays
            packed[fmt] = get_format(fmt).pack(w8 if family(fmt) == "int8" else layer.w)
        shapes = tuple(get_format(fmt).array_specs(packed[fmt]))
        variant = "" if conv else variant  # one conv template per format family
        specs.append(
            Kernel(f"tune_{i}", fmt, layer.k, layer.n, shapes, conv=layer.geom, variant=variant, packed=packed[fmt])
        )
    if conv:
        x, y_shape = conv_io(layer, rows)
        dense, y_dense = dense_conv_runner(layer, x, threads)
        dense()
        ref = y_dense.numpy().reshape(y_shape).astype(np.float64)
        if layer.op == "QLinearConv" and not floated:  # timed against ORT's own QLinearConv
            dense = qlinear_dense_runner(layer, x, threads)
    else:
        x, y_shape = np.random.default_rng(rows).standard_normal((rows, layer.k)).astype(np.float32), (rows, layer.n)
        if layer.op == "QLinearMatMul" and not floated:  # against ORT's own QLinearMatMul
            dense = qlinear_dense_runner(layer, x, threads)
        elif layer.op == "MatMulInteger":  # against ORT's int8 path
            dense = int8_dense_runner(layer.w, rows, threads)
        else:
            dense = dense_runner(layer.k, layer.n, rows, threads)
        ref = x.astype(np.float64) @ layer.w.T.astype(np.float64)
    # int8 kernels (MatMulInteger): a uint8 activation and its zero point, exact integer sums
    x8 = np.random.default_rng(rows).integers(0, 256, (rows, layer.k)).astype(np.uint8)
    ref8 = (x8.astype(np.float64) - INT8_ZERO_POINT) @ w8.T.astype(np.float64)
    with tempfile.TemporaryDirectory(prefix="sparsec-tune-") as tmp:
        path = Path(tmp) / "tune.so"
        target.build(specs, path)
        lib = tvm.runtime.load_module(str(path))
        xt, yt = tvm.runtime.tensor(x), tvm.runtime.tensor(np.zeros(y_shape, np.float32))
        x8t, zp = tvm.runtime.tensor(x8), tvm.runtime.tensor(np.array([INT8_ZERO_POINT], np.uint8))
        fns: dict[str, Callable[[], object]] = {"dense": dense}
        for spec, entry in zip(specs, entries, strict=True):
            f = lib[spec.symbol]
            arrays = [tvm.runtime.tensor(a) for a in packed[entry.split("|")[0]].values()]
            int8 = get_format(spec.format).family == "int8"
            args = (x8t, *arrays, zp, yt) if int8 else (xt, *arrays, yt)
            f(*args)
            expect = ref8 if int8 else ref
            err = np.abs(yt.numpy() - expect).max() / max(np.abs(expect).max(), 1.0)
            if not err < 1e-4:
                raise SparsecError(f"internal error: tuning kernel {entry} for {layer.name} is wrong (error {err:.1e})")
            fns[entry] = functools.partial(f, *args)
        gaps = {"dense": GAP_S, entries[-1]: TVM_GAP_S}
        res = interleaved(fns, budget_s=0.0, min_samples=ROUNDS, max_samples=ROUNDS, gap_s=0.0, gaps=gaps)
    return {name: r["median_ms"] * 1e3 for name, r in res.items()}


# How the timings of a cached entry were taken: 2 = ORT's dense layer with its workers spinning, as in a model
# (entries of 1, with blocking workers, timed dense up to 2x slow; calibrate_measure.bound_session).
TIMING = 2


def tune_layer(
    layer: Layer,
    rows: int,
    presets: list[str],
    predicted: Callable[[str], float],
    target: Target,
    versions: dict[str, str],
    node_us: float = EP_NODE_US,
    floated: bool = False,
) -> tuple[Choice, str, dict[str, float], bool]:
    """(choice, kernel variant, measured us per entry, whether it came from the cache) for one layer; ``node_us`` is
    the sparse node's own cost (the cost model's ``node_us``), added to the kernel timed alone; ``floated``: the
    layer runs on ORT's float32 MatMul/Conv when dense (passes/choose.floats_dense)."""
    from sparsec import cache

    conv = layer.geom is not None  # Conv or ConvInteger
    entries = candidates(layer, presets, predicted, (lambda f: ["conv"]) if conv else target.variants)
    if not entries:
        return Choice("dense", "stays dense: no sparse format fits"), "", {}, False
    desc = target.describe()
    key = cache.key_of(
        {
            "kind": "tune",
            "k": layer.k,
            "n": layer.n,
            "m": rows,
            "pattern": pattern_hash(layer.w),
            "entries": entries,
            "cpu": desc.get("cpu"),
            "isa": desc.get("isa"),
            "llvm_target": desc.get("llvm_target"),  # codegen options change the kernels timed
            "timing": TIMING,
            "versions": versions,
            "threads": _threads(),
            "conv": dataclasses.asdict(layer.geom) if conv and layer.geom is not None else None,
            **_dense_key(layer, floated),
        }
    )
    times = cache.get_json("tune", key)
    cached = times is not None and set(times) == {"dense", *entries}
    if not cached:
        times = _measure(layer, entries, rows, target, _threads(), floated)
        cache.put_json("tune", key, times)
    assert times is not None
    # A sparse conv next to a conv ORT keeps in its NCHWc layout makes ORT convert layouts there (passes/layout.py):
    # not part of the kernel's time, so the estimate of those conversions is added to every sparse entry. ORT's Conv
    # measured alone pays the same conversions of its own input and output (ORT reorders around a lone NCHWc conv;
    # profiled: 512->512 1x1 at 14x14, 229 us Conv + 24 us reorders), which its NCHWc neighbours in the model spare
    # it: they come off the dense time.
    extra = reorder_us(layer.reorder) if conv else 0.0
    measured = times

    def total_us(entry: str) -> float:  # an integer layer's conversions around the kernel (passes/integer, qlinear)
        return measured[entry] + integer_us(layer, rows, family(entry.split("|")[0]) == "int8")

    best = min(entries, key=total_us)
    fmt, variant = best.split("|")
    # The kernel was timed alone, ORT's op as a one-node session: the sparse node's own cost is added.
    floated_us = integer_us(layer, rows, int8_kernel=False) if floated else 0.0  # its conversions, as a float kernel's
    absorbed = absorbed_us(rows, layer.n, layer.absorbed)  # ORT's epilogue nodes (fused into the sparse kernel)
    dense_us, best_us = max(times["dense"] - extra + floated_us + absorbed, 1e-3), total_us(best) + extra + node_us
    layout = f", {extra:.1f} us of layout conversions moved from dense to sparse" if extra else ""
    if best_us >= dense_us:
        why = f"stays dense: measured {dense_us:.1f} us dense vs {best_us:.1f} us {fmt} at M={rows}{layout}"
        return Choice("dense", why, dense_us / best_us), "", times, cached
    why = (
        f"measured {dense_us / best_us:.2f}x of dense at M={rows} "
        f"({fmt} {variant}: {best_us:.1f} us, dense {dense_us:.1f} us{layout})"
    )
    return Choice(fmt, why, dense_us / best_us), "" if conv else variant, times, cached


def tune_layers(
    layers: list[Layer], presets: list[str], cost: CostModel, target: Target, options: CompileOptions, say: Progress
) -> list[Layer]:
    """Replace the cost model's choices by measured ones; each tuned layer gets its ``tuning`` record."""
    auto = options.format == "auto"
    todo = [la.name for la in layers if not la.skip and (auto or la.format not in ("dense", ""))]
    if options.format == "dense":
        todo = []
    versions = toolchain_versions()
    tuned: set[str] = set()

    def tune_one(layer: Layer) -> Layer:
        rows = layer.rows or options.representative_m
        predicted = predicted_speedup(layer, cost, rows)
        forced = options.format != "auto"
        choice, variant, times, cached = tune_layer(
            layer,
            rows,
            [options.format] if forced else presets,
            predicted,
            target,
            versions,
            cost.node_us,
            floats_dense(layer, cost),
        )
        if forced and choice.format == "dense" and times:  # forced: keep the format, take its fastest variant
            best = min((e for e in times if e != "dense"), key=lambda e: times[e])
            variant = best.split("|")[1]
            choice = Choice(options.format, f"forced by --format ({choice.reason.removeprefix('stays dense: ')})")
        tuned.add(layer.name)
        how = "cached" if cached else f"measured {len(times) - 1} kernels and dense"
        say(f"tuning {bar(len(tuned), len(todo))} {layer.name}: {choice.format} {variant} ({how})")
        measured = {k: round(v, 3) for k, v in sorted(times.items())}
        return dataclasses.replace(layer, choice=choice, tuning=Tuning(variant, measured, cached))

    out = [tune_one(la) if la.name in todo else la for la in layers]
    if auto:  # measured times are cached: re-choosing after the layout recount measures nothing again
        out = settle_layout(out, tune_one)
    return out


def _dense_key(layer: Layer, floated: bool) -> dict[str, str]:
    """What the dense time was measured on, when not ORT's float32 MatMul/Conv (the tuning cache's key)."""
    if floated:
        return {}
    if layer.op == "MatMulInteger":
        return {"dense": "int8"}  # ORT's int8 path (DynamicQuantizeMatMul)
    if layer.op in QLINEAR_OPS:
        return {"dense": f"{layer.op}:{np.dtype(activation_dtype(layer)).name}"}
    return {}


def _threads() -> int:
    return int(os.environ.get("TVM_NUM_THREADS") or os.cpu_count() or 1)


def bar(done: int, total: int, width: int = 20) -> str:
    filled = round(width * done / max(total, 1))
    return "[" + "#" * filled + "." * (width - filled) + f"] {done}/{total}"
