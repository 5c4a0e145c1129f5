"""A tiny TVM kernel library for the EP tests: CSR sparse matmul kernels in TVMScript, symbolic batch M.

Written here (not taken from targets/) so the EP is tested against the kernel ABI alone
(docs/internals.md, "Kernel ABI"): X f32[M, K], values, indices, indptr, [bias f32[N]], [residual f32[M, N]], Y.
Kernels use T.parallel on purpose: that path calls back into libtvm_runtime (__TVMBackendParallelLaunch),
which crashes unless the EP loaded the runtime with global symbol scope first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def csr_plain(K: int, N: int, nnz: int) -> Any:
    """Y = X @ W^T with W in CSR."""
    from tvm.script import tirx as T

    @T.prim_func
    def kernel(
        x: T.handle,
        values: T.Buffer((nnz,), "float32"),
        indices: T.Buffer((nnz,), "int32"),
        indptr: T.Buffer((N + 1,), "int32"),
        y: T.handle,
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        M = T.int64()
        X = T.match_buffer(x, (M, K), "float32")
        Y = T.match_buffer(y, (M, N), "float32")
        for m in T.parallel(M):
            for n in range(N):
                Y[m, n] = T.float32(0)
                for j in range(indptr[n], indptr[n + 1]):
                    Y[m, n] = Y[m, n] + values[j] * X[m, indices[j]]

    return kernel


def csr_bias_residual_relu(K: int, N: int, nnz: int) -> Any:
    """Y = relu(X @ W^T + bias + residual): the full epilogue argument list of the ABI."""
    from tvm.script import tirx as T

    @T.prim_func
    def kernel(
        x: T.handle,
        values: T.Buffer((nnz,), "float32"),
        indices: T.Buffer((nnz,), "int32"),
        indptr: T.Buffer((N + 1,), "int32"),
        bias: T.Buffer((N,), "float32"),
        r: T.handle,
        y: T.handle,
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        M = T.int64()
        X = T.match_buffer(x, (M, K), "float32")
        R = T.match_buffer(r, (M, N), "float32")
        Y = T.match_buffer(y, (M, N), "float32")
        for m in T.parallel(M):
            for n in range(N):
                Y[m, n] = bias[n] + R[m, n]
                for j in range(indptr[n], indptr[n + 1]):
                    Y[m, n] = Y[m, n] + values[j] * X[m, indices[j]]
                Y[m, n] = T.max(Y[m, n], T.float32(0))

    return kernel


def build_library(path: Path, funcs: dict[str, Any]) -> Path:
    """Compile {symbol: prim_func} for the host CPU (generic llvm) and export a shared library."""
    import tvm

    mod = tvm.IRModule({name: f.with_attr("global_symbol", name) for name, f in funcs.items()})
    lib = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    lib.export_library(str(path))
    return path
