"""Interleaved timing shared by ``sparsec bench`` and ``benchmarks/``: medians of alternating samples.

This machine's speed drifts for tens of seconds at a time, so the functions compared are timed alternately
(A B A B ...) and medians are compared; thread pools are given time to stop spinning between samples.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

# ORT's intra-op workers keep spinning 20-50 ms after a run (measured: two spinning sessions run back to back
# in one process take 2x as long each; with a 50 ms pause between them, the same as alone).
GAP_S = 0.06
# TVM's own pool (kernels called directly through TVM, as tuning and calibration do; sparsec sessions use ORT's
# pool) spins TVM_THREAD_POOL_SPIN_COUNT (default 300000) yields after a kernel: measured here, ORT timed 60 ms after
# such a call is 2x slow, 100 ms after it is not. Pause longer after every such sample.
TVM_GAP_S = 0.2


def _calls_per_sample(fn: Callable[[], object], sample_ms: float) -> int:
    """Calls per timed block, from the fastest of 5 calls (a disturbed estimate would make blocks too short)."""
    fastest = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        fn()
        fastest = min(fastest, (time.perf_counter() - t0) * 1e3)
    return max(1, min(2000, round(sample_ms / max(fastest, 1e-6))))


def interleaved(
    fns: dict[str, Callable[[], object]],
    budget_s: float = 1.0,
    min_samples: int = 11,
    max_samples: int = 400,
    sample_ms: float = 10.0,
    warmup: int = 3,
    gap_s: float = GAP_S,
    gaps: dict[str, float] | None = None,
) -> dict[str, dict[str, float]]:
    """Time ``fns`` alternately (A B A B ...): per name the median, p25 and p75 ms per call.

    Fast functions are called several times per sample (about ``sample_ms``) so timer overhead stays small.
    After each sample the process sleeps ``gap_s`` so the thread pools that just ran stop spinning before the next
    function starts (each session has its own pools; a still-spinning one halves the next one's speed), and each
    sample starts with one untimed call that wakes the function's own sleeping threads.
    ``gaps`` overrides ``gap_s`` per name (use ``TVM_GAP_S`` after kernels called through TVM's own pool).
    Sampling stops after ``budget_s`` seconds once every function has ``min_samples`` samples.
    """
    pause = {name: (gaps or {}).get(name, gap_s) for name in fns}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    reps = {name: _calls_per_sample(fn, sample_ms) for name, fn in fns.items()}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    for i in range(max_samples):
        for name, fn in fns.items():
            n = reps[name]
            for _ in range(max(1, n // 5)):  # untimed: wake this function's threads (after a pause they sleep)
                fn()
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) * 1e3 / n)
            time.sleep(pause[name])
        if i + 1 >= min_samples and time.perf_counter() - start > budget_s:
            break
    out: dict[str, dict[str, float]] = {}
    for name, xs in samples.items():
        q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
        out[name] = {"median_ms": statistics.median(xs), "p25_ms": q[0], "p75_ms": q[2], "samples": len(xs)}
    return out
