"""``sparsec bench``: ORT on the original model vs the artifact, same inputs and threads, interleaved runs.

The baseline is ORT as a user gets it (its default spinning thread pool); the artifact runs as
``sparsec.runtime.InferenceSession`` runs it by default (the same ORT defaults; the kernels run on that session's
pool). Samples alternate with pauses so neither session's spinning threads slow the other (``sparsec.timing``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import onnx

from .errors import SparsecError, ort_message
from .timing import GAP_S, interleaved
from .verify import accepted_dims, random_feeds, relative_error


def bench(
    artifact: str | Path,
    baseline: str | Path,
    dims: dict[str, int],
    threads: int = 0,
    repeat: int = 30,
    seed: int = 0,
    input_shapes: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """Median latencies (ms) of ORT dense on ``baseline`` and of ``artifact``, their ratio and the max error."""
    import onnxruntime as ort

    from .frontend import load_model
    from .runtime import InferenceSession, default_session_options
    from .shapes import fix_input_shapes

    threads = threads or (os.cpu_count() or 1)
    model = load_model(baseline)
    if input_shapes:
        model = fix_input_shapes(model, input_shapes)
    feeds = random_feeds(model, accepted_dims(model, dims, seed=seed), seed=seed)
    base_opts = ort.SessionOptions()
    base_opts.intra_op_num_threads = threads
    dense = ort.InferenceSession(str(baseline), base_opts, providers=["CPUExecutionProvider"])
    sp_opts = default_session_options()
    sp_opts.intra_op_num_threads = threads
    sparse = InferenceSession(artifact, sp_opts)
    try:
        ref = dense.run(None, feeds)
    except Exception as e:
        raise SparsecError(f"ONNX Runtime cannot run the baseline on the bench inputs: {ort_message(e)}") from None
    try:
        got = sparse.run(None, feeds)
    except Exception as e:
        raise SparsecError(
            f"the artifact cannot run the bench inputs: {ort_message(e)} (it was compiled for other shapes? "
            "--dim sizes the symbolic dims)"
        ) from None
    err = max(relative_error(g, r) for g, r in zip(got, ref, strict=True))
    stats = interleaved(
        {"ort": lambda: dense.run(None, feeds), "sparsec": lambda: sparse.run(None, feeds)},
        budget_s=0.0,
        min_samples=repeat,
        gaps={"ort": GAP_S, "sparsec": GAP_S},
    )
    ort_ms, sp_ms = stats["ort"]["median_ms"], stats["sparsec"]["median_ms"]
    return {
        "ort_ms": ort_ms,
        "sparsec_ms": sp_ms,
        "speedup": ort_ms / sp_ms,
        "max_rel_error": err,
        "threads": threads,
        "samples": repeat,
        "ort_p25_p75_ms": [stats["ort"]["p25_ms"], stats["ort"]["p75_ms"]],
        "sparsec_p25_p75_ms": [stats["sparsec"]["p25_ms"], stats["sparsec"]["p75_ms"]],
        "input_shapes": {k: list(v.shape) for k, v in feeds.items()},
        "onnxruntime": ort.__version__,
        "model": Path(baseline).name,
        "opset": [
            (o.domain or "ai.onnx", o.version) for o in onnx.load(str(baseline), load_external_data=False).opset_import
        ],
    }
