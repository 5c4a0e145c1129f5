"""Shared pieces: interleaved timing, ORT / sparsec sessions, the compile cache, paths."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sparsec.timing import interleaved  # noqa: F401  (the benchmarks time with `sparsec bench`'s timing)

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
THREADS = 2
SPIN_KEY = "session.intra_op.allow_spinning"


def source_digest() -> str:
    """Hash of the compiler's sources: cached artifacts are reused only while the compiler is unchanged."""
    h = hashlib.sha256()
    for folder in ("sparsec", "passes", "targets"):
        for p in sorted((ROOT / folder).rglob("*")):
            if p.suffix in (".py", ".cc", ".h", ".txt") and "__pycache__" not in p.parts:
                h.update(str(p.relative_to(ROOT)).encode())
                h.update(p.read_bytes())
    return h.hexdigest()[:12]


def ort_options(threads: int = THREADS, spinning: bool = True) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only (the EP placement warning is expected)
    if not spinning:
        so.add_session_config_entry(SPIN_KEY, "0")
    return so


def dense_session(model: str | Path, threads: int = THREADS, spinning: bool = True) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(model), ort_options(threads, spinning), providers=["CPUExecutionProvider"])


def sparsec_session(artifact: str | Path, threads: int = THREADS, spinning: bool = True) -> Any:
    """ORT's default spinning, as sparsec.runtime uses it: the kernels run on the session's own ORT pool (before
    2026-11-25 they ran on TVM's pool, which fought ORT's spinning workers: MiniLM-L3 b1 136 ms spinning vs 13 ms
    not)."""
    from sparsec.runtime import InferenceSession

    return InferenceSession(artifact, ort_options(threads, spinning))


def runner(sess: Any, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
    def run() -> object:
        return sess.run(None, feeds)

    return run


def max_error(got: list[np.ndarray], ref: list[np.ndarray]) -> float:
    from sparsec.verify import relative_error

    return max(relative_error(g, r) for g, r in zip(got, ref, strict=True))


def set_tvm_threads(threads: int = THREADS) -> str:
    """TVM's pool size is read when the pool starts: set it before the first sparsec session (unless the user did)."""
    os.environ.setdefault("TVM_NUM_THREADS", str(threads))
    return os.environ["TVM_NUM_THREADS"]


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals), idle


def cpu_busy(interval_s: float = 0.5) -> float:
    """Fraction of all CPUs busy over ``interval_s`` while this process sleeps (i.e. other processes' load)."""
    try:
        t0, i0 = _cpu_times()
        time.sleep(interval_s)
        t1, i1 = _cpu_times()
    except OSError:
        return 0.0
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)


def wait_quiet(
    say: Callable[[str], None], threshold: float = 0.2, max_wait_s: float = 120.0, interval_s: float = 0.5
) -> float:
    """Wait (up to ``max_wait_s``) until other processes use less than ``threshold`` of the CPUs; return the last
    measured busy fraction, which goes into the results: numbers taken above the threshold are flagged."""
    busy = cpu_busy(interval_s)
    start = time.perf_counter()
    warned = False
    while busy > threshold and time.perf_counter() - start < max_wait_s:
        if not warned:
            say(f"other processes keep {busy:.0%} of the CPUs busy; waiting up to {max_wait_s:.0f} s")
            warned = True
        busy = cpu_busy(2.0)
    return busy
