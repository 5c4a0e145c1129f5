"""The EP runs the kernels' parallel loops on ORT's intra-op pool (runtime/ep/parallel.h), not on TVM's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import onnx
import pytest

from models.synthetic import transformer_ffn
from sparsec.compiler import compile_model
from sparsec.options import CompileOptions

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ffn_artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("threads")
    onnx.save(transformer_ffn(d=384, hidden=768, out=20, density=0.1), d / "ffn.onnx")
    compile_model(d / "ffn.onnx", d / "ffn.sparsec", CompileOptions(format="csr", verify=False))
    return d / "ffn.sparsec", d / "ffn.onnx"


def test_kernels_start_no_thread_pool_of_their_own(ffn_artifact: tuple[Path, Path]) -> None:
    artifact, original = ffn_artifact
    env = {"TVM_NUM_THREADS": "4", "PATH": "/usr/bin:/bin"}  # TVM's pool would add 3 workers
    out = subprocess.run(
        [sys.executable, "-m", "tests.runtime.thread_probe", str(artifact), str(original)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["error"] < 1e-4
    assert probe["after_runs"] == probe["created"], probe  # 20 runs of parallel kernels: no new threads
    # The probe can see a pool start: the same kernel called through TVM's own loader starts TVM's workers.
    assert probe["after_tvm"] >= probe["after_runs"] + 3, probe


def test_bad_parallel_tasks_option(ffn_artifact: tuple[Path, Path], ort: Any, tvm_runtime: Path) -> None:
    """An app registering the EP itself gets ORT's error naming the option, not a crash or a silent default."""
    from sparsec.runtime import EP_NAME

    artifact = ffn_artifact[0]
    so = ort.SessionOptions()
    devices = [d for d in ort.get_ep_devices() if d.ep_name == EP_NAME]
    so.add_provider_for_devices(devices, {
        "kernel_library": str(artifact / "kernels.so"), "tvm_runtime": str(tvm_runtime),
        "parallel_tasks": "many",
    })  # fmt: skip
    with pytest.raises(Exception, match="parallel_tasks must be an integer in 1..1024, got 'many'"):
        ort.InferenceSession(str(artifact / "model.onnx"), so)


def test_single_thread_session(ffn_artifact: tuple[Path, Path]) -> None:
    """With one intra-op thread ORT has no pool: the parallel loops run inline, with the same results."""
    import numpy as np
    import onnxruntime as ort

    from sparsec.runtime import InferenceSession

    artifact, original = ffn_artifact
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    x = np.random.default_rng(3).standard_normal((3, 5, 384)).astype(np.float32)
    got = InferenceSession(artifact, so).run(None, {"x": x})
    ref = ort.InferenceSession(str(original), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for g, r in zip(got, ref, strict=True):
        assert np.abs(g - r).max() <= 1e-4 * max(np.abs(r).max(), 1e-3)
