"""``python -m benchmarks.int8_kernels``: the int8:1x4 kernel (x86 AVX-512 VNNI) against ORT's int8 MatMul.

The kernel grid of issue 16: M in {1, 16, 128, 1024} x (K, N) in {384x1536, 1536x384, 768x3072, 3072x768}, weights
at 90% sparsity pruned unstructured (their 1x4 blocks ~34% occupied) and in 1x4 blocks (``sparsec prune --pattern
block:1x4:0.9``). Each kernel is built by the x86 target exactly as ``compile`` builds it, checked against int64
numpy, then timed interleaved (2 threads) with ORT's own int8 path on the same weight: DynamicQuantizeLinear +
MatMulInteger, which ORT fuses into DynamicQuantizeMatMul (passes/calibrate_measure.int8_dense_runner), so ORT's
side includes quantizing X. Prints a Markdown table; needs a CPU with AVX-512 VNNI.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .common import THREADS, set_tvm_threads
from .report import md_table

SHAPES = ((384, 1536), (1536, 384), (768, 3072), (3072, 768))  # (K, N)
ZERO_POINT = 128


def weight(rng: np.random.Generator, n: int, k: int, pattern: str) -> np.ndarray:
    """An int8-valued W[N, K] at 90% sparsity: unstructured, or in 1x4 blocks."""
    from sparsec.prune import parse_pattern, prune_weight

    w = rng.integers(-127, 128, (n, k)).astype(np.float32)
    w[w == 0] = 1
    return prune_weight(w, parse_pattern(f"{pattern}:0.9"))


def kernel_runner(w: np.ndarray, m: int, folder: Path) -> Callable[[], object]:
    """The compiled int8:1x4 kernel on a uint8 X[m, K], checked exact against int64 numpy."""
    import tvm

    from sparsec.formats import get_format
    from sparsec.layer import Kernel
    from sparsec.targets.registry import get_target

    n, k = w.shape
    f = get_format("int8:1x4")
    packed = f.pack(w)
    path = folder / f"k{k}_n{n}_{len(packed['words'])}.so"
    if not path.is_file():
        get_target("x86").build([Kernel("k", f.name, k, n, tuple(f.array_specs(packed)), packed=packed)], path)
    fn = tvm.runtime.load_module(str(path))["k"]
    x = np.random.default_rng(m).integers(0, 256, (m, k)).astype(np.uint8)
    args = [tvm.runtime.tensor(a) for a in (x, *packed.values(), np.array([ZERO_POINT], np.uint8))]
    y = tvm.runtime.tensor(np.zeros((m, n), np.float32))
    fn(*args, y)
    ref = ((x.astype(np.int64) - ZERO_POINT) @ w.T.astype(np.int64)).astype(np.float32)
    if not np.array_equal(y.numpy(), ref):
        raise AssertionError(f"int8:1x4 kernel {k}x{n} M={m} differs from int64 numpy")
    return lambda: fn(*args, y)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.int8_kernels", description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, nargs="*", default=[1, 16, 128, 1024], help="token counts")
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of interleaved timing per cell")
    args = ap.parse_args(argv)
    from sparsec.passes.calibrate_measure import int8_dense_runner
    from sparsec.targets.registry import get_target
    from sparsec.timing import TVM_GAP_S, interleaved

    if not get_target("x86").supports("int8:1x4"):
        print("int8:1x4 needs a CPU with AVX-512 VNNI", file=sys.stderr)
        return 2
    set_tvm_threads()
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="sparsec-int8-") as tmp:
        for pattern in ("unstructured", "block:1x4"):
            for k, n in SHAPES:
                w = weight(rng, n, k, pattern)
                blocks = np.count_nonzero(np.any(w.reshape(n, k // 4, 4) != 0, axis=2)) / (n * k / 4)
                for m in args.m:
                    ours = kernel_runner(w, m, Path(tmp))
                    ort = int8_dense_runner(np.ascontiguousarray(w.T).astype(np.int8), m, THREADS)
                    t = interleaved({"int8:1x4": ours, "ort": ort}, budget_s=args.budget, gaps={"int8:1x4": TVM_GAP_S})
                    a, b = t["int8:1x4"]["median_ms"], t["ort"]["median_ms"]
                    gops = 2 * m * k * n / (a * 1e6)  # dense-equivalent int8 ops per second
                    rows.append([pattern, f"{k}x{n}", str(m), f"{blocks:.2f}", f"{a:.3f}", f"{b:.3f}",
                                 f"**{b / a:.2f}x**", f"{gops:.0f}"])  # fmt: skip
                    print(f"[int8_kernels] {' '.join(rows[-1])}", file=sys.stderr, flush=True)
    header = ["90% sparse", "K x N", "M", "1x4 blocks kept", "int8:1x4 ms", "ORT int8 ms", "vs ORT int8",
              "dense-equiv. GOP/s"]  # fmt: skip
    print(md_table(header, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
