"""``python -m benchmarks.gpu_check``: run every CUDA kernel on this machine's NVIDIA GPU against a float64
reference on fresh random inputs, and time it against ORT's dense MatMul on the CUDA EP (cuBLAS).

Needs an NVIDIA GPU + driver and nvcc; the dense baseline also needs onnxruntime-gpu (without it the sparse
kernels are still checked and timed, the dense column says n/a). Exits 2 with one line when there is no GPU.
Kernels are built for the GPU's own arch when sparsec knows it (sm_80/86/89/90), else for the newest known arch
below it (a newer GPU JIT-compiles the fatbin's PTX). Exit status 1 when any kernel is wrong.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

# (format, variant, N, K, density): transformer-sized layers; nm:2:4 is 50% by construction.
LAYERS: tuple[tuple[str, str, int, int, float], ...] = (
    ("csr", "", 768, 768, 0.1),
    ("csr", "", 3072, 768, 0.05),
    ("bsr:16x1", "", 768, 768, 0.1),
    ("bsr:4x4", "", 768, 3072, 0.1),
    ("bsr:1x16", "", 3072, 768, 0.1),
    ("bsr:32x1", "", 768, 768, 0.2),
    ("nm:2:4", "f16", 768, 768, 0.5),
    ("nm:2:4", "bf16", 3072, 768, 0.5),
)
ROWS = (1, 7, 128, 1024)  # M = batch x sequence
TOL = {"": 1e-4, "f16": 5e-3, "bf16": 3e-2}  # max |err| / max |ref|; 16-bit inputs on the tensor cores


@dataclass
class Row:
    fmt: str
    variant: str
    n: int
    k: int
    m: int
    rel_err: float
    ok: bool
    sparse_us: float
    dense_us: float | None


def weight(fmt: str, n: int, k: int, density: float, rng: np.random.Generator) -> np.ndarray:
    """A random weight with ``fmt``'s structure (N:M full: every group holds N nonzeros)."""
    from sparsec.formats import get_format

    f = get_format(fmt)
    return f.random(n, k, 1.0 if f.family == "nm" else density, rng)


def gelu64(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def dense_session(w: np.ndarray, bias: np.ndarray) -> Any:
    """ORT on the CUDA EP: Y = Gelu(X @ W^T + bias) with I/O on the GPU, or None without onnxruntime-gpu."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None
    nodes = [
        helper.make_node("MatMul", ["x", "wt"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["z"]),
        helper.make_node("Gelu", ["z"], ["y"], domain="com.microsoft"),
    ]
    k, n = w.shape[1], w.shape[0]
    graph = helper.make_graph(
        nodes,
        "dense",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["m", n])],
        [numpy_helper.from_array(np.ascontiguousarray(w.T), "wt"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    return ort.InferenceSession(model.SerializeToString(), providers=["CUDAExecutionProvider"])


def time_dense(sess: Any, x: np.ndarray, n: int, reps: int) -> float:
    import onnxruntime as ort

    binding = sess.io_binding()
    binding.bind_ortvalue_input("x", ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    binding.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_shape_and_type((x.shape[0], n), np.float32, "cuda", 0))
    for _ in range(3):
        sess.run_with_iobinding(binding)
    t0 = time.perf_counter()
    for _ in range(reps):
        sess.run_with_iobinding(binding)
    binding.synchronize_outputs()
    return (time.perf_counter() - t0) / reps * 1e6


def build_arch(cc: tuple[int, int]) -> str:
    from sparsec.targets.cuda.arch import ARCHS

    have = 10 * cc[0] + cc[1]
    fitting = [a for a in ARCHS if int(a[3:]) <= have]
    if not fitting:
        raise SystemExit(f"gpu_check: this GPU is sm_{have}; sparsec's CUDA kernels need sm_80 or newer")
    return fitting[-1]


def check(seed: int, reps: int, rows: tuple[int, ...] = ROWS, layers: tuple[Any, ...] = LAYERS) -> list[Row]:
    from sparsec.formats import get_format
    from sparsec.layer import Epilogue, Kernel
    from sparsec.targets.cuda.build import generate, launch_metadata
    from sparsec.targets.cuda.launcher import Driver, grid_of, kernel_args
    from sparsec.targets.cuda.toolchain import compile_source, resource_usage

    drv = Driver()
    arch = build_arch(drv.compute_capability())
    rng = np.random.default_rng(seed)
    specs, weights = [], []
    for i, (fmt, variant, n, k, density) in enumerate(layers):
        w = weight(fmt, n, k, density, rng)
        packed = get_format(fmt).pack(w)
        arrays = tuple(get_format(fmt).array_specs(packed))
        epilogue = Epilogue(bias=True, act="gelu")
        specs.append(Kernel(f"chk{i}", fmt, k, n, arrays, epilogue=epilogue, variant=variant, packed=packed))
        weights.append((w, packed, rng.standard_normal(n).astype(np.float32)))
    source, launches = generate(specs, arch)
    meta = launch_metadata(source, arch, launches, resource_usage(source, arch)[1])
    module = drv.load(compile_source(source, arch, "fatbin")[0])
    out: list[Row] = []
    for spec, km, (w, packed, bias) in zip(specs, meta["kernels"], weights, strict=True):
        fn = drv.function(module, km["entry"])
        dev = {name: drv.upload(a) for name, a in packed.items()} | {"bias": drv.upload(bias)}
        dense = dense_session(w, bias)
        for m in rows:
            x = rng.standard_normal((m, spec.K)).astype(np.float32)
            arrays = dev | {"X": drv.upload(x), "Y": drv.empty((m, spec.N))}
            args = kernel_args(km, arrays, m)
            drv.launch(fn, grid_of(km, m), tuple(km["block"]), args)
            drv.synchronize()
            y = drv.download(arrays["Y"])
            ref = gelu64(x.astype(np.float64) @ w.T.astype(np.float64) + bias)
            err = float(np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-30))
            t0 = time.perf_counter()
            for _ in range(reps):
                drv.launch(fn, grid_of(km, m), tuple(km["block"]), args)
            drv.synchronize()
            sparse_us = (time.perf_counter() - t0) / reps * 1e6
            dense_us = time_dense(dense, x, spec.N, reps) if dense is not None else None
            out.append(
                Row(spec.format, km["variant"], spec.N, spec.K, m, err, err < TOL[spec.variant], sparse_us, dense_us)
            )
            drv.free(arrays["X"])
            drv.free(arrays["Y"])
        for a in dev.values():
            drv.free(a)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=None, help="random seed (default: fresh each run)")
    p.add_argument("--reps", type=int, default=50)
    args = p.parse_args(argv)
    from sparsec.targets.cuda.driver import driver_problem
    from sparsec.targets.cuda.toolchain import find_nvcc

    problem = driver_problem() or ("" if find_nvcc() else "nvcc (CUDA toolkit) was not found")
    if problem:
        print(f"gpu_check: cannot run here: {problem}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else int(time.time())
    rows = check(seed, args.reps)
    print(f"seed {seed}\n| format | variant | N x K | M | max rel err | ok | sparse us | ORT dense us | speedup |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ok = "yes" if r.ok else "NO"
        dense = f"{r.dense_us:.1f}" if r.dense_us is not None else "n/a"
        speed = f"{r.dense_us / r.sparse_us:.2f}x" if r.dense_us is not None else "n/a"
        cells = [r.fmt, r.variant, f"{r.n}x{r.k}", r.m, f"{r.rel_err:.2e}", ok, f"{r.sparse_us:.1f}", dense, speed]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    bad = [r for r in rows if not r.ok]
    if bad:
        print(f"gpu_check: {len(bad)} kernel runs differ from the float64 reference", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
