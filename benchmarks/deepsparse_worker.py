"""Runs inside .venv-deepsparse (numpy<2, deepsparse 1.8.0); prints one JSON line. Not imported by sparsec.

python deepsparse_worker.py --model M13.onnx --ort-model M.onnx --input name=x.npy ... [--cores 2] [--budget 4]
DeepSparse gets a private copy of the model (with input_shapes it rewrites the file in place); ORT dense runs the
original model with the same inputs and threads, interleaved with DeepSparse (a pause after each sample lets the
other engine's threads stop spinning), so their ratio survives this machine's speed drift.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np

GAP_S = 0.06  # let the pool that just ran stop spinning before the other engine starts (see benchmarks/common.py)


def _timed(fn: Callable[[], object], reps: int) -> float:
    fn()  # untimed: wakes the engine's threads after the pause
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) * 1e3 / reps


def _rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    g, r = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if g.shape != r.shape:
        return float("inf")
    return float(np.max(np.abs(g - r))) / max(float(np.max(np.abs(r))), 1e-30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--ort-model", required=True)
    ap.add_argument("--input", action="append", default=[])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--budget", type=float, default=4.0)
    a = ap.parse_args()
    os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")
    import deepsparse
    import onnxruntime as ort

    feeds = {}
    for item in a.input:
        name, _, path = item.partition("=")
        feeds[name] = np.load(path)
    arrays = list(feeds.values())
    batch = int(arrays[0].shape[0])
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "model.onnx")
        shutil.copy(a.model, copy)
        engine = deepsparse.Engine(
            copy, batch_size=batch, num_cores=a.cores, input_shapes=[list(x.shape) for x in arrays]
        )
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.cores
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(a.ort_model, so, providers=["CPUExecutionProvider"])
    ds_inputs = [feeds[n] for n in engine.input_names] if set(engine.input_names) == set(feeds) else arrays
    got = dict(zip(engine.output_names, engine.run(ds_inputs), strict=True))
    ref = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
    errs = {n: _rel_err(got[n], ref[n]) for n in ref if n in got and np.issubdtype(ref[n].dtype, np.floating)}
    run_ds = lambda: engine.run(ds_inputs)  # noqa: E731
    run_ort = lambda: sess.run(None, feeds)  # noqa: E731
    for _ in range(3):
        run_ds()
        run_ort()
    reps_ds = max(1, round(5.0 / max(_timed(run_ds, 2), 1e-3)))
    reps_ort = max(1, round(5.0 / max(_timed(run_ort, 2), 1e-3)))
    ds, dense = [], []
    start = time.perf_counter()
    while len(ds) < 11 or time.perf_counter() - start < a.budget:
        ds.append(_timed(run_ds, reps_ds))
        time.sleep(GAP_S)
        dense.append(_timed(run_ort, reps_ort))
        time.sleep(GAP_S)
        if len(ds) >= 400:
            break
    print(
        json.dumps(
            {
                "deepsparse_ms": statistics.median(ds),
                "ort_ms": statistics.median(dense),
                "ratio_ort_over_deepsparse": statistics.median(dense) / statistics.median(ds),
                "samples": len(ds),
                "fraction_of_supported_ops": getattr(engine, "fraction_of_supported_ops", None),
                "max_rel_error_vs_ort": max(errs.values(), default=None),
                "compared_outputs": len(errs),
                "deepsparse_version": deepsparse.__version__,
                "onnxruntime_version": ort.__version__,
                "cpu_avx_type": getattr(engine, "cpu_avx_type", None),
            }
        )
    )


if __name__ == "__main__":
    main()
