"""The sparsec plugin EP end to end: ORT + libsparsec_ep.so + a TVM kernel library built in the test."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import EP_NAME, Weights
from .ep_models import Session, mlp_model, mlp_reference, single_layer_model
from .onnx_models import SparseLayer, csr_pack, random_sparse, save_model


@pytest.fixture(scope="module")
def mlp_session(tmp_path_factory: pytest.TempPathFactory, weights: Weights, make_session: Session) -> Any:
    return make_session(mlp_model(tmp_path_factory.mktemp("mlp") / "mlp.onnx", weights), record_assignment=True)


# ----------------------------------------------------------------------------------------------------------------
# numbers


@pytest.mark.parametrize("lead", [(1, 1), (1, 3), (3, 5), (2, 7), (1, 64)])
def test_mlp_matches_numpy(mlp_session: Any, weights: Weights, lead: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(lead))
    x = rng.standard_normal((*lead, weights.K)).astype(np.float32)
    r = rng.standard_normal((*lead, weights.N2)).astype(np.float32)
    (y,) = mlp_session.run(None, {"X": x, "R": r})
    assert y.shape == (*lead, weights.N2)
    np.testing.assert_allclose(y, mlp_reference(weights, x, r), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m", [1, 5, 17, 0])
def test_rank2_symbolic_batch(tmp_path: Path, weights: Weights, make_session: Session, m: int) -> None:
    layer = SparseLayer("fc1", "X", "Y", "k_fc1", weights.K, weights.N1, dict(weights.p1))
    sess = make_session(single_layer_model(tmp_path / "m.onnx", layer))
    x = np.random.default_rng(m).standard_normal((m, weights.K)).astype(np.float32)
    (y,) = sess.run(None, {"X": x})
    assert y.shape == (m, weights.N1)
    np.testing.assert_allclose(y, x @ weights.W1.T, rtol=1e-5, atol=1e-5)


def test_unaligned_input(mlp_session: Any, weights: Weights) -> None:
    # A numpy view one float into a buffer: not 64-byte aligned. The EP must still compute the right thing.
    rng = np.random.default_rng(7)
    buf = np.zeros(3 * 5 * weights.K + 1, np.float32)
    x = buf[1:].reshape(3, 5, weights.K)
    x[...] = rng.standard_normal(x.shape)
    r = rng.standard_normal((3, 5, weights.N2)).astype(np.float32)
    (y,) = mlp_session.run(None, {"X": x, "R": r})
    np.testing.assert_allclose(y, mlp_reference(weights, x, r), rtol=1e-5, atol=1e-5)


def test_concurrent_runs(mlp_session: Any, weights: Weights) -> None:
    """Compute keeps no shared mutable state: runs from several threads at once give each its own answer."""
    errors: list[str] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(20):
            lead = (int(rng.integers(1, 4)), int(rng.integers(1, 9)))
            x = rng.standard_normal((*lead, weights.K)).astype(np.float32)
            r = rng.standard_normal((*lead, weights.N2)).astype(np.float32)
            (y,) = mlp_session.run(None, {"X": x, "R": r})
            if not np.allclose(y, mlp_reference(weights, x, r), rtol=1e-5, atol=1e-5):
                errors.append(f"thread {seed}: mismatch for {lead}")

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# ----------------------------------------------------------------------------------------------------------------
# placement


def test_claims_exactly_the_sparsec_nodes(mlp_session: Any) -> None:
    placed = {
        node.name: sg.ep_name for sg in mlp_session.get_provider_graph_assignment_info() for node in sg.get_nodes()
    }
    assert placed == {"fc1": EP_NAME, "fc2": EP_NAME, "relu": "CPUExecutionProvider"}


@pytest.mark.parametrize(
    "change",
    [
        {"attrs": {"source": "OtherEP"}},
        {"attrs": {"ep_cache_context": "sparsec=2;kernel=k_fc1;format=csr;K=24;N=16"}},
        {"attrs": {"ep_cache_context": "sparsec=10;kernel=k_fc1;format=csr;K=24;N=16"}},
    ],
)
def test_foreign_epcontext_not_claimed(tmp_path: Path, weights: Weights, make_session: Session, change: Any) -> None:
    # Not ours -> not claimed -> no EP can run an EPContext node, and ORT says so.
    with pytest.raises(Exception) as info:
        make_session(mlp_model(tmp_path / "m.onnx", weights, **change))
    assert "EPContext" in str(info.value)
    assert "SparsecEP: node" not in str(info.value)


# ----------------------------------------------------------------------------------------------------------------
# bad inputs at run time: an error from onnxruntime, never a crash; the session stays usable


def test_wrong_last_dim(tmp_path: Path, weights: Weights, make_session: Session) -> None:
    layer = SparseLayer("fc1", "X", "Y", "k_fc1", weights.K, weights.N1, dict(weights.p1))
    sess = make_session(single_layer_model(tmp_path / "m.onnx", layer, x_shape=["M", "K"]))
    with pytest.raises(Exception, match=r"SparsecEP: node 'fc1'.*last dimension must be K=24"):
        sess.run(None, {"X": np.ones((2, weights.K + 1), np.float32)})
    with pytest.raises(Exception, match=r"last dimension must be K=24"):
        sess.run(None, {"X": np.ones((5, 3), np.float32)})
    x = np.ones((2, weights.K), np.float32)
    np.testing.assert_allclose(sess.run(None, {"X": x})[0], x @ weights.W1.T, rtol=1e-5, atol=1e-5)


def test_wrong_dtype(tmp_path: Path, weights: Weights, make_session: Session) -> None:
    from onnx import TensorProto

    layer = SparseLayer("fc1", "X", "Y", "k_fc1", weights.K, weights.N1, dict(weights.p1))
    model = single_layer_model(tmp_path / "m.onnx", layer, x_type=TensorProto.DOUBLE, x_shape=["M", weights.K])
    sess = make_session(model)
    with pytest.raises(Exception, match=r"SparsecEP: node 'fc1'.*X must be float32, got float64"):
        sess.run(None, {"X": np.ones((2, weights.K), np.float64)})


def test_residual_shape_mismatch(tmp_path: Path, weights: Weights, make_session: Session) -> None:
    w = weights
    fc2 = SparseLayer("fc2", "X", "Y", "k_fc2", w.N1, w.N2, dict(w.p2), bias=w.b2, residual="R", act="relu")
    model = save_model(tmp_path / "m.onnx", [fc2], [], {"X": ["M", w.N1], "R": ["A", "B"]}, {"Y": ["M", w.N2]})
    sess = make_session(model)
    x = np.ones((3, w.N1), np.float32)
    with pytest.raises(Exception, match=r"node 'fc2'.*residual must be float32\[3,12\]"):
        sess.run(None, {"X": x, "R": np.ones((3, w.N2 + 1), np.float32)})
    r = np.ones((3, w.N2), np.float32)
    expected = np.maximum(x @ w.W2.T + w.b2 + r, 0)
    np.testing.assert_allclose(sess.run(None, {"X": x, "R": r})[0], expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# kernel library problems: clear errors at session creation


def test_missing_kernel_library(tmp_path: Path, weights: Weights, make_session: Session) -> None:
    missing = tmp_path / "nowhere" / "kernels.so"
    with pytest.raises(Exception, match=f"kernel library not found: {missing}"):
        make_session(mlp_model(tmp_path / "m.onnx", weights), kernel_library=str(missing))


def test_unloadable_kernel_library(tmp_path: Path, weights: Weights, make_session: Session) -> None:
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"not a shared library")
    with pytest.raises(Exception, match=f"cannot load kernel library {junk}"):
        make_session(mlp_model(tmp_path / "m.onnx", weights), kernel_library=str(junk))


def test_kernel_library_option_missing(tmp_path: Path, weights: Weights, make_session: Session) -> None:
    with pytest.raises(Exception, match="node 'fc1': EP option 'kernel_library' is not set"):
        make_session(mlp_model(tmp_path / "m.onnx", weights), kernel_library=None)


def test_no_sparsec_nodes_needs_no_kernel_library(tmp_path: Path, make_session: Session) -> None:
    # An artifact whose layers all stayed dense: the EP is registered but has nothing to do.
    from onnx import helper

    model = save_model(
        tmp_path / "m.onnx", [], [helper.make_node("Relu", ["X"], ["Y"], name="relu")], {"X": ["M", 4]}, {"Y": ["M", 4]}
    )
    sess = make_session(model, kernel_library=None, tvm_runtime=None)
    x = np.array([[-1.0, 2.0, -3.0, 4.0]], np.float32)
    np.testing.assert_array_equal(sess.run(None, {"X": x})[0], np.maximum(x, 0))


def test_missing_tvm_runtime(tmp_path: Path, weights: Weights, make_session: Session) -> None:
    missing = tmp_path / "libtvm_runtime.so"
    with pytest.raises(Exception, match=f"TVM runtime library not found: {missing}"):
        make_session(mlp_model(tmp_path / "m.onnx", weights), tvm_runtime=str(missing))


def test_missing_kernel_function(tmp_path: Path, weights: Weights, make_session: Session) -> None:
    model = mlp_model(tmp_path / "m.onnx", weights, kernel="k_absent")
    with pytest.raises(Exception, match=r"node 'fc1': kernel function 'k_absent' not found in .*kernels\.so"):
        make_session(model)


def test_csr_pack_roundtrip() -> None:
    # The test's own packer must agree with the layout the kernels read.
    rng = np.random.default_rng(0)
    w = random_sparse(rng, 7, 9)
    p = csr_pack(w)
    back = np.zeros_like(w)
    for row in range(7):
        for j in range(p["indptr"][row], p["indptr"][row + 1]):
            back[row, p["indices"][j]] = p["values"][j]
    np.testing.assert_array_equal(back, w)


_FRESH_PROCESS = """
import sys, numpy as np, onnxruntime as ort
lib, model, kernels, tvm_runtime, data = sys.argv[1:6]
assert "tvm" not in sys.modules and "tvm_ffi" not in sys.modules
ort.register_execution_provider_library("SparsecEP", lib)
devices = [d for d in ort.get_ep_devices() if d.ep_name == "SparsecEP"]
so = ort.SessionOptions()
so.add_provider_for_devices(devices, {"kernel_library": kernels, "tvm_runtime": tvm_runtime})
sess = ort.InferenceSession(model, so)
feeds = dict(np.load(data))
np.save(data + ".y.npy", sess.run(None, feeds)[0])
assert "tvm" not in sys.modules
"""


def test_fresh_process_without_tvm_import(
    tmp_path: Path, weights: Weights, ep_library: Path, kernel_library: Path, tvm_runtime: Path
) -> None:
    """The deployment case: a process that never imports tvm. The EP itself must make libtvm_ffi and
    libtvm_runtime globally visible before loading the kernels, or the T.parallel kernels crash."""
    import subprocess
    import sys

    model = mlp_model(tmp_path / "m.onnx", weights)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4, 33, weights.K)).astype(np.float32)
    r = rng.standard_normal((4, 33, weights.N2)).astype(np.float32)
    data = tmp_path / "feeds.npz"
    np.savez(data, X=x, R=r)
    args = [str(ep_library), str(model), str(kernel_library), str(tvm_runtime), str(data)]
    res = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, *args], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    y = np.load(str(data) + ".y.npy")
    np.testing.assert_allclose(y, mlp_reference(weights, x, r), rtol=1e-5, atol=1e-5)


def test_bad_constant_bias_rejected(tmp_path: Path, weights: Weights, make_session: Session) -> None:
    w = weights
    fc2 = SparseLayer("fc2", "X", "Y", "k_fc2", w.N1, w.N2, dict(w.p2), bias=w.b2[:-1], residual="R", act="relu")
    model = save_model(tmp_path / "m.onnx", [fc2], [], {"X": ["M", w.N1], "R": ["M", w.N2]}, {"Y": ["M", w.N2]})
    with pytest.raises(Exception, match=r"node 'fc2': bias 'fc2__bias' must be float32 with N=12 elements"):
        make_session(model)


def test_kernel_signature_mismatch_is_an_error(tmp_path: Path, weights: Weights, make_session: Session) -> None:
    # fc1 wired to a kernel with another argument list: TVM's own argument checks fail -> OrtStatus, no crash.
    sess = make_session(mlp_model(tmp_path / "m.onnx", weights, kernel="k_fc2"))
    x = np.ones((1, 2, weights.K), np.float32)
    r = np.ones((1, 2, weights.N2), np.float32)
    with pytest.raises(Exception, match=r"node 'fc1': kernel 'k_fc2' failed: .*"):
        sess.run(None, {"X": x, "R": r})


@pytest.mark.parametrize("fmt", ["csr", "bsr:4x1", "bsr:3x5", "bsr:16x1", "nm:2:4", "nm:1:8"])
def test_accepts_project_packers(tmp_path: Path, make_session: Session, fmt: str) -> None:
    """Contract check: what sparsec.formats packs and sparsec.node encodes passes the EP's validation
    (the kernel lookup after it then fails, as this test library has no kernel of that name)."""
    from sparsec.formats import get_format
    from sparsec.layer import Kernel
    from sparsec.node import attributes

    rng = np.random.default_rng(5)
    n, k = 37, 45  # multiples of nothing: shifted BSR blocks, a short last N:M group
    w = random_sparse(rng, n, k, 0.3)
    if fmt.startswith("nm:"):
        keep, group = (int(v) for v in fmt.split(":")[1:])
        for row in w:
            for g in range(0, k, group):
                seg = row[g : g + group]
                seg[np.argsort(-np.abs(seg), kind="stable")[keep:]] = 0
    packed = get_format(fmt).pack(w)
    info = Kernel("no_such_kernel", fmt, k, n)
    layer = SparseLayer("L", "X", "Y", "no_such_kernel", k, n, dict(packed), fmt=fmt, attrs=attributes(info, "L"))
    with pytest.raises(Exception, match="node 'L': kernel function 'no_such_kernel' not found"):
        make_session(single_layer_model(tmp_path / "m.onnx", layer))
