"""The EP's CUDA launch path without a GPU: a CUDA artifact run through sparsec.runtime against a stand-in
libcuda.so.1 (tests/runtime/fake_cuda/fake_cuda.c: host memory, a CPU CSR product as the "kernel"). Checks what
the EP does around a launch: driver loading, weight upload, argument order from kernels.launch, grid / block, M,
Y copied back, and two runs on one session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from sparsec.targets.cuda.toolchain import find_nvcc

FAKE = Path(__file__).with_name("fake_cuda") / "fake_cuda.c"
K, N = 48, 20
RUN = """
import sys, numpy as np
from sparsec.runtime import InferenceSession
s = InferenceSession(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], np.stack([s.run(None, {"x": x})[0], s.run(None, {"x": x[::-1].copy()})[0]]))
"""


def matmul_model(w: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")],
        "fc",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", K])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", N])],
        [numpy_helper.from_array(w, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.skipif(shutil.which("cc") is None or not find_nvcc(), reason="needs a C compiler and nvcc")
def test_cuda_artifact_runs_through_the_ep_on_a_stand_in_driver(tmp_path: Path, ep_library: Path) -> None:
    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions

    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(tmp_path / "libcuda.so.1"), str(FAKE)], check=True)
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((K, N)) * (rng.random((K, N)) < 0.2)).astype(np.float32)
    onnx.save(matmul_model(w), str(tmp_path / "fc.onnx"))
    art = tmp_path / "fc.sparsec"
    compile_model(tmp_path / "fc.onnx", art, CompileOptions(target="cuda", format="csr", verify=False))
    (line,) = (art / "kernels.launch").read_text().splitlines()
    meta = json.loads((art / "kernels.json").read_text())["kernels"][0]
    x = rng.standard_normal((37, K)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, LD_LIBRARY_PATH=str(tmp_path), FAKE_CUDA_PARAMS=line.split()[8])
    env |= {"FAKE_CUDA_N": str(N), "FAKE_CUDA_K": str(K), "FAKE_CUDA_LOG": str(tmp_path / "launch.log")}
    r = subprocess.run(
        [sys.executable, "-c", RUN, str(art), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    y = np.load(tmp_path / "y.npy")
    ref = x.astype(np.float64) @ w.astype(np.float64)
    np.testing.assert_allclose(y[0], ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y[1], ref[::-1], rtol=1e-5, atol=1e-5)  # second run: weights stay uploaded
    launches = (tmp_path / "launch.log").read_text().split("\n")[:-1]
    grid = f"{-(-37 // meta['rows_per_block'])} {meta['grid_y']} 1"
    block = " ".join(str(v) for v in meta["block"])
    assert launches == [f"{meta['entry']} {grid} {block} 37"] * 2
