"""One sparse layer, kernel only: every x86 kernel variant vs ORT dense MatMul and numpy.

Run: ``python -m benchmarks.kernels [--m 128 --k 768 --n 768 --density 0.1 --formats csr,bsr:16x1]``.

Default layer: M=128, K=N=768 at 90% sparsity (N:M at its own density), 2 threads, interleaved timing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .common import THREADS, dense_session, interleaved, set_tvm_threads

FORMATS = ("csr", "bsr:16x1", "bsr:8x1", "bsr:4x4", "bsr:1x16", "bsr:1x8", "nm:2:4", "nm:1:4", "nm:2:8")


def ort_matmul(w: np.ndarray, path: Path) -> Any:
    """ORT session for Y = X @ W^T with a dynamic batch (as exported models have)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n, k = w.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "B"], ["Y"])],
        "layer",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])],
        [numpy_helper.from_array(np.ascontiguousarray(w.T), "B")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return dense_session(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--m", type=int, default=128)
    ap.add_argument("--k", type=int, default=768)
    ap.add_argument("--n", type=int, default=768)
    ap.add_argument("--density", type=float, default=0.1)
    ap.add_argument("--formats", default=",".join(FORMATS))
    args = ap.parse_args()
    set_tvm_threads(THREADS)
    import tvm

    from sparsec.formats import get_format
    from sparsec.layer import Kernel
    from sparsec.targets.x86.target import X86Target

    target, rng = X86Target(), np.random.default_rng(0)
    x = rng.standard_normal((args.m, args.k)).astype(np.float32)
    cases, specs = {}, []
    for fmt in args.formats.split(","):
        f = get_format(fmt)
        w = f.random(args.n, args.k, 1.0 if f.family == "nm" else args.density, rng)
        packed = f.pack(w)
        arrays = tuple(f.array_specs(packed))
        for v in target.variants(fmt):
            sym = f"{fmt.replace(':', '_')}_{v}"
            specs.append(Kernel(sym, fmt, args.k, args.n, arrays, variant=v, packed=packed))
            cases[sym] = (w, packed)
    with tempfile.TemporaryDirectory() as tmp:
        target.build(specs, Path(tmp) / "k.so")
        lib = tvm.runtime.load_module(str(Path(tmp) / "k.so"))
        dense_w = cases[specs[0].symbol][0]
        ort = ort_matmul(dense_w, Path(tmp) / "dense.onnx")
    xt = tvm.runtime.tensor(x)
    y = tvm.runtime.tensor(np.zeros((args.m, args.n), np.float32))
    fns: dict[str, Any] = {"ort_dense": lambda: ort.run(None, {"X": x}), "numpy_dense": lambda: x @ dense_w.T}
    for sym, (w, packed) in cases.items():
        targs = [tvm.runtime.tensor(a) for a in packed.values()]
        lib[sym](xt, *targs, y)
        err = np.abs(y.numpy() - x.astype(np.float64) @ w.T.astype(np.float64)).max() / np.abs(x @ w.T).max()
        assert err < 1e-4, f"{sym}: error {err:.1e}"
        fns[sym] = lambda f=lib[sym], a=targs: f(xt, *a, y)
    # Thread pools (TVM, ORT, OpenBLAS) spin after a call and steal the 2 cores from each other, so each pool is
    # timed in its own block; the TVM variants share one pool and are interleaved among themselves.
    res: dict[str, dict[str, float]] = {}
    for group in (["ort_dense"], ["numpy_dense"], [k for k in fns if k not in ("ort_dense", "numpy_dense")]):
        res.update(interleaved({k: fns[k] for k in group}, budget_s=2.0))
    base = res["ort_dense"]["median_ms"]
    print(f"M={args.m} K={args.k} N={args.n} density={args.density} threads={THREADS} isa={target.isa}")
    for name, r in sorted(res.items(), key=lambda kv: kv[1]["median_ms"]):
        print(f"{name:22s} {r['median_ms']:8.3f} ms   x{base / r['median_ms']:5.2f} vs ORT dense")


if __name__ == "__main__":
    main()
