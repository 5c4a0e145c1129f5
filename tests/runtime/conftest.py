"""Session-scoped fixtures for the EP tests: the built EP, ORT with the EP registered, a small kernel library."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .onnx_models import csr_pack, random_sparse

EP_NAME = "SparsecEP"


@pytest.fixture(scope="session")
def ep_library() -> Path:
    from sparsec.errors import SparsecError
    from sparsec.runtime.build_ep import build_ep

    if shutil.which("cmake") is None:  # no toolchain at all: nothing to test here
        pytest.skip("cmake not installed: cannot build the sparsec EP")
    try:
        return build_ep()
    except SparsecError as e:  # a broken build is a failure, not a skip
        pytest.fail(f"building the sparsec EP failed: {e}")


@pytest.fixture(scope="session")
def ort(ep_library: Path) -> Any:
    """onnxruntime with the sparsec EP registered once for the whole test process."""
    import onnxruntime

    if not any(d.ep_name == EP_NAME for d in onnxruntime.get_ep_devices()):
        onnxruntime.register_execution_provider_library(EP_NAME, str(ep_library))
    return onnxruntime


@pytest.fixture(scope="session")
def tvm_runtime() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("tvm")
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0]) / "lib" / "libtvm_runtime.so"


class Weights:
    """The fixed weights every test model uses, so one kernel library serves all tests."""

    K, N1, N2 = 24, 16, 12

    def __init__(self) -> None:
        rng = np.random.default_rng(1234)
        self.W1 = random_sparse(rng, self.N1, self.K)
        self.W2 = random_sparse(rng, self.N2, self.N1)
        self.b2 = rng.standard_normal(self.N2).astype(np.float32)
        self.p1 = csr_pack(self.W1)
        self.p2 = csr_pack(self.W2)


@pytest.fixture(scope="session")
def weights() -> Weights:
    return Weights()


@pytest.fixture(scope="session")
def kernel_library(tmp_path_factory: pytest.TempPathFactory, weights: Weights) -> Path:
    """kernels.so with k_fc1 (plain CSR, K->N1) and k_fc2 (CSR + bias + residual + relu, N1->N2)."""
    from .kernels import build_library, csr_bias_residual_relu, csr_plain

    w = weights
    path = tmp_path_factory.mktemp("kernels") / "kernels.so"
    return build_library(
        path,
        {
            "k_fc1": csr_plain(w.K, w.N1, len(w.p1["values"])),
            "k_fc2": csr_bias_residual_relu(w.N1, w.N2, len(w.p2["values"])),
        },
    )


@pytest.fixture(scope="session")
def make_session(ort: Any, kernel_library: Path, tvm_runtime: Path) -> Callable[..., Any]:
    """make_session(model, **ep_options) -> InferenceSession with the sparsec EP (options default to the test
    kernel library and the installed TVM runtime; pass None to leave one out)."""

    def make(model: Path, record_assignment: bool = False, **options: str | None) -> Any:
        ep_options = {"kernel_library": str(kernel_library), "tvm_runtime": str(tvm_runtime)}
        ep_options.update(options)  # type: ignore[arg-type]
        devices = [d for d in ort.get_ep_devices() if d.ep_name == EP_NAME]
        assert devices, "the sparsec EP offers no device"
        so = ort.SessionOptions()
        so.log_severity_level = 3  # keep ORT's placement warnings out of the test output
        so.add_provider_for_devices(devices, {k: v for k, v in ep_options.items() if v is not None})
        if record_assignment:
            so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
        return ort.InferenceSession(str(model), so)

    return make
