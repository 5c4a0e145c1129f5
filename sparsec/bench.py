"""``sparsec bench``: ORT on the original model vs the artifact, same inputs and threads, interleaved runs.

This machine's speed drifts for tens of seconds at a time, so the two are timed alternately (A B A B ...)
and the ratio is taken of the medians (see DESIGN.md, Measuring).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .verify import random_feeds, relative_error


def _session_options(threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return so


def _time_once(sess: Any, feeds: dict[str, np.ndarray]) -> float:
    t0 = time.perf_counter()
    sess.run(None, feeds)
    return (time.perf_counter() - t0) * 1e3


def bench(
    artifact: str | Path,
    baseline: str | Path,
    dims: dict[str, int],
    threads: int = 0,
    repeat: int = 30,
    warmup: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Median latencies (ms) of ORT dense on ``baseline`` and of ``artifact``, their ratio and the max error."""
    import onnxruntime as ort

    from .frontend import load_model
    from .runtime import InferenceSession

    threads = threads or (os.cpu_count() or 1)
    model = load_model(baseline)
    feeds = random_feeds(model, dims, seed=seed)
    dense = ort.InferenceSession(str(baseline), _session_options(threads), providers=["CPUExecutionProvider"])
    sparse = InferenceSession(artifact, _session_options(threads))
    ref, got = dense.run(None, feeds), sparse.run(None, feeds)
    err = max(relative_error(g, r) for g, r in zip(got, ref, strict=True))
    for _ in range(warmup):
        dense.run(None, feeds)
        sparse.run(None, feeds)
    ta, tb = [], []
    for _ in range(repeat):
        ta.append(_time_once(dense, feeds))
        tb.append(_time_once(sparse, feeds))
    ort_ms, sp_ms = statistics.median(ta), statistics.median(tb)
    shapes = {k: list(v.shape) for k, v in feeds.items()}
    return {
        "ort_ms": ort_ms,
        "sparsec_ms": sp_ms,
        "speedup": ort_ms / sp_ms,
        "max_rel_error": err,
        "threads": threads,
        "repeat": repeat,
        "input_shapes": shapes,
        "onnxruntime": ort.__version__,
        "model": Path(baseline).name,
        "opset": [
            (o.domain or "ai.onnx", o.version) for o in onnx.load(str(baseline), load_external_data=False).opset_import
        ],
    }
