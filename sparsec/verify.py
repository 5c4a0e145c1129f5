"""Numeric checks: random feeds for a model's inputs, and the compiled artifact compared with ORT on the original.

The error measure is per output ``max|compiled - reference| / max(max|reference|, SCALE_FLOOR)``: relative to the
output's magnitude, so values near zero do not make it meaningless; the floor keeps an output whose values are all
tiny (e.g. GELU of negative inputs, where ORT's own ``1 + erf`` loses relative precision) from turning float32
rounding into a failure: below 1e-3 in magnitude, the tolerance is absolute (1e-7).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .errors import SparsecError, ort_message

_NP = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT16: np.int16,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT64: np.uint64,
    onnx.TensorProto.UINT32: np.uint32,
    onnx.TensorProto.UINT16: np.uint16,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.BOOL: np.bool_,
}
TOLERANCE = 1e-4
SCALE_FLOOR = 1e-3
MAX_FEED_ELEMENTS = 1 << 27  # 512 MiB of float32 per random input


def _gather_bounds(model: onnx.ModelProto) -> dict[str, int]:
    """Integer inputs used as Gather indices into a constant table: their valid range is the table's rows."""
    rows = {i.name: int(i.dims[0]) for i in model.graph.initializer if len(i.dims) >= 1}
    bounds: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[0] in rows:
            bounds[node.input[1]] = rows[node.input[0]]
    return bounds


def random_feeds(
    model: onnx.ModelProto,
    dims: dict[str, int] | None = None,
    seed: int = 0,
    default_dim: int = 2,
    scale: float = 1.0,
) -> dict[str, np.ndarray]:
    """Fresh random inputs for every graph input; symbolic dims take ``dims[name]`` (an unnamed one
    ``dims['input[axis]']``) or ``default_dim``; floating-point inputs are standard normal times ``scale``."""
    rng = np.random.default_rng(seed)
    dims = dims or {}
    inits = {i.name for i in model.graph.initializer}
    bounds = _gather_bounds(model)
    feeds: dict[str, np.ndarray] = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        if tt.elem_type not in _NP:
            raise SparsecError(
                f"input {vi.name!r}: unsupported element type {onnx.TensorProto.DataType.Name(tt.elem_type)}"
            )
        shape = [
            d.dim_value if d.HasField("dim_value") else dims.get(d.dim_param or f"{vi.name}[{i}]", default_dim)
            for i, d in enumerate(tt.shape.dim)
        ]
        if math.prod(shape) > MAX_FEED_ELEMENTS:
            raise SparsecError(
                f"input {vi.name!r} of shape {shape} is too large for a random test input "
                f"(over {MAX_FEED_ELEMENTS} elements); give smaller --dim values or use --no-verify"
            )
        dt = _NP[tt.elem_type]
        value: np.ndarray
        if np.issubdtype(dt, np.floating):
            value = (rng.standard_normal(shape) * scale).astype(dt)
        elif dt is np.bool_:
            value = rng.random(shape) < 0.5
        elif "mask" in vi.name.lower():
            value = np.ones(shape, dt)
        else:
            value = rng.integers(0, bounds.get(vi.name, 2), size=shape).astype(dt)
        feeds[vi.name] = np.asarray(value, dt)  # rank-0 inputs come back as numpy scalars
    return feeds


DIM_TRIES = (2, 1, 32, 224)  # sizes tried for symbolic dims --dim does not give: small first, then image-like


def unset_dims(model: onnx.ModelProto, dims: dict[str, int]) -> list[str]:
    """The symbolic dims of the model's (non-initializer) inputs that ``dims`` does not size: 'name', or
    'input[axis]' for an unnamed one."""
    inits = {i.name for i in model.graph.initializer}
    out: list[str] = []
    for vi in model.graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type"):
            continue
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_value"):
                continue
            label = d.dim_param or f"{vi.name}[{i}]"
            if label not in dims and label not in out:
                out.append(label)
    return out


def _candidate_sizes(model: onnx.ModelProto, unset: list[str], tries: tuple[int, ...]) -> Iterator[dict[str, int]]:
    """Sizes for the ``unset`` dims, in the order accepted_dims tries them (the graph's implied sizes are only
    worked out when the first guess fails)."""
    yield {u: tries[0] for u in unset}
    from .implied_dims import implied_dims

    implied = {k: v for k, v in implied_dims(model).items() if k in unset}
    if implied:
        yield from ({u: implied.get(u, d) for u in unset} for d in tries)
    yield from ({u: d for u in unset} for d in tries[1:])


def accepted_dims(
    model: onnx.ModelProto,
    dims: dict[str, int],
    seed: int = 0,
    tries: tuple[int, ...] = DIM_TRIES,
    sess: Any = None,
) -> dict[str, int]:
    """``dims`` with every symbolic input dim it leaves unset sized so that the original model runs with no output
    empty (``sess``: a reference_session of ``model`` to reuse): all at the first of ``tries`` ORT accepts; when the
    first is refused, the sizes the graph implies (sparsec/implied_dims.py: a fixed-size constant added or
    concatenated after the convs) for those dims, the others at each of ``tries``, come next. None unset: ``dims``,
    without running anything. None accepted: a SparsecError naming the dims and the flag that sets them (the sizes
    were sparsec's guess, not a fault of the model)."""
    unset = unset_dims(model, dims)
    if not unset:
        return dict(dims)
    first = ""
    sess = sess if sess is not None else reference_session(model)  # a model ORT cannot load fails here
    for sizes in _candidate_sizes(model, unset, tries):
        sized = {**dims, **sizes}
        try:
            outs = reference_outputs(model, random_feeds(model, sized, seed=seed), sess)
        except SparsecError as e:
            first = first or str(e).removeprefix("ONNX Runtime cannot run the original model: ")
            continue
        if all(np.asarray(o).size for o in outs):  # an empty output would check nothing
            return sized
        first = first or "an output is empty"
    names = ", ".join(unset)
    unnamed = " (INPUT[AXIS]=N for an unnamed one)" if any(u.endswith("]") for u in unset) else ""
    raise SparsecError(
        f"ONNX Runtime runs the model with none of the sizes sparsec tried ({', '.join(map(str, tries))}) for "
        f"its symbolic dims {names} (with {tries[0]}: {first}); give them with --dim NAME=N{unnamed}"
    )


def relative_error(got: Any, ref: Any) -> float:
    """The error measure of the module docstring; sequences and maps (ai.onnx.ml outputs such as ZipMap's list of
    {label: probability}) are compared element by element (the worst element; inf when their structure differs)."""
    if isinstance(ref, dict):
        if not isinstance(got, dict) or got.keys() != ref.keys():
            return float("inf")
        return max((relative_error(got[k], ref[k]) for k in ref), default=0.0)
    if isinstance(ref, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(ref):
            return float("inf")
        return max((relative_error(g, r) for g, r in zip(got, ref, strict=True)), default=0.0)
    if isinstance(got, (dict, list, tuple)):
        return float("inf")
    got64, ref64 = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got64.shape != ref64.shape:
        return float("inf")
    if got64.size == 0:
        return 0.0
    if not np.all(np.isfinite(got64) == np.isfinite(ref64)):
        return float("inf")
    fin = np.isfinite(ref64)
    scale = max(float(np.max(np.abs(ref64[fin]))) if fin.any() else 0.0, SCALE_FLOOR)
    return float(np.max(np.abs(got64[fin] - ref64[fin]), initial=0.0)) / scale


def weight_only_dequantized(model: onnx.ModelProto) -> bool:
    """Whether a MatMul / Gemm reads a DequantizeLinear weight while its activation is not dequantized."""
    made_by = {o: n.op_type for n in model.graph.node for o in n.output}
    return any(
        n.op_type in ("MatMul", "Gemm")
        and len(n.input) > 1
        and made_by.get(n.input[1]) == "DequantizeLinear"
        and made_by.get(n.input[0]) != "DequantizeLinear"
        for n in model.graph.node
    )


def reference_session(model: onnx.ModelProto | str | Path) -> Any:
    """An ORT (CPU EP) session on the original model; a model ORT cannot load is a SparsecError."""
    import onnxruntime as ort

    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    so = ort.SessionOptions()
    so.log_severity_level = 4  # the exception carries the message: no duplicate log lines
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    if weight_only_dequantized(proto):
        # ORT's extended optimizations turn DequantizeLinear -> MatMul with a float activation into MatMulNBits,
        # which also quantizes the activation (0.25% off the graph's float meaning, measured on
        # tests/test_prune_model.py's chain model); sparsec compiles such a weight as its float value, so the
        # reference runs the graph as written. (A QDQ model, whose activations are quantized too, keeps the default:
        # ORT's own levels differ by whole quantization steps there, 25% on MiniLM-L3 QDQ, and the compiled model
        # runs its quantized activations at the default level.)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    from .runtime.session import keep_float_weights

    keep_float_weights(so)  # the weights the reference folds stay as folded, as in the compiled model's session
    try:
        return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise SparsecError(f"ONNX Runtime cannot run the original model: {ort_message(e)}") from None


def reference_outputs(
    model: onnx.ModelProto | str | Path, feeds: dict[str, np.ndarray], sess: Any = None
) -> list[np.ndarray]:
    """ORT (CPU EP) on the original model (``sess``: a reference_session of it, to run it again)."""
    sess = sess if sess is not None else reference_session(model)
    try:
        return list(sess.run(None, feeds))
    except Exception as e:
        raise SparsecError(f"ONNX Runtime cannot run the original model: {ort_message(e)}") from None


def compare_artifact(
    original: onnx.ModelProto | str | Path, artifact: str | Path, feeds: dict[str, np.ndarray]
) -> dict[str, float]:
    """Max relative error per output of the artifact (through the sparsec EP) against ORT on the original."""

    def run() -> list[np.ndarray]:
        from .runtime import InferenceSession

        sess: Any = InferenceSession(artifact)
        try:
            return sess.run(None, feeds)
        except Exception as e:
            raise SparsecError(f"the compiled model failed in ONNX Runtime: {ort_message(e)}") from None

    return compare_outputs(original, run, feeds)


def compare_outputs(
    original: onnx.ModelProto | str | Path, run: Callable[[], list[np.ndarray]], feeds: dict[str, np.ndarray]
) -> dict[str, float]:
    """Max relative error per output of ``run()`` (a compiled model's outputs, in model order) against ORT on the
    original. The original runs first, so a model ORT itself cannot run is reported as such."""
    ref = reference_outputs(original, feeds)
    got = run()
    model = original if isinstance(original, onnx.ModelProto) else onnx.load(str(original), load_external_data=False)
    names = [o.name for o in model.graph.output]
    if len(got) != len(ref):
        raise SparsecError(f"the compiled model returned {len(got)} outputs, the original {len(ref)}")
    return {n: relative_error(g, r) for n, g, r in zip(names, got, ref, strict=True)}
