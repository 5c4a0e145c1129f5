"""The EP's conv path (op=conv nodes): geometry checked at session creation, input shapes checked on every run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparsec.conv import ConvGeometry

from .conftest import Weights
from .onnx_models import SparseLayer, save_model

Session = Callable[..., Any]
GEOM = "op=conv;C=24;H=3;W=5;kh=1;kw=1;sh=1;sw=1;dh=1;dw=1;pt=0;pl=0;pb=0;pr=0"  # K = 24 = weights.K


@pytest.fixture(scope="module")
def conv_library(tmp_path_factory: pytest.TempPathFactory, weights: Weights) -> Path:
    """k_conv: the pointwise conv of GEOM with W1 as csr (built by the x86 target, as the compiler would)."""
    from sparsec.layer import Kernel
    from sparsec.targets.x86.target import X86Target

    arrays = tuple((k, tuple(v.shape), str(v.dtype)) for k, v in weights.p1.items())
    spec = Kernel("k_conv", "csr", weights.K, weights.N1, arrays, conv=ConvGeometry(24, 3, 5), packed=dict(weights.p1))
    path = tmp_path_factory.mktemp("conv") / "kernels.so"
    X86Target().build([spec], path)
    return path


def conv_model(path: Path, w: Weights, ctx: str = GEOM) -> Path:
    layer = SparseLayer("conv", "X", "Y", "k_conv", w.K, w.N1, dict(w.p1), extra_ctx=";" + ctx)
    return save_model(path, [layer], [], {"X": None}, {"Y": None})  # type: ignore[dict-item]  (any rank: EP checks)


def test_conv_runs_and_checks_shapes(
    tmp_path: Path, weights: Weights, make_session: Session, conv_library: Path
) -> None:
    sess = make_session(conv_model(tmp_path / "m.onnx", weights), kernel_library=str(conv_library))
    x = np.random.default_rng(0).standard_normal((2, 24, 3, 5)).astype(np.float32)
    expected = np.einsum("nc,bchw->bnhw", weights.W1, x)
    np.testing.assert_allclose(sess.run(None, {"X": x})[0], expected, rtol=1e-5, atol=1e-5)
    for bad in [(2, 24, 3, 6), (2, 23, 3, 5), (2, 24, 15), (24, 3, 5, 1, 1)]:
        with pytest.raises(Exception, match=r"node 'conv': X has shape .*the convolution needs \[batch, 24, 3, 5\]"):
            sess.run(None, {"X": np.ones(bad, np.float32)})
    np.testing.assert_allclose(sess.run(None, {"X": x})[0], expected, rtol=1e-5, atol=1e-5)  # still usable


@pytest.mark.parametrize(
    ("ctx", "message"),
    [
        (GEOM.replace(";H=3", ""), "op=conv lacks required key 'H'"),
        (GEOM.replace("C=24", "C=23"), r"C\*kh\*kw=23 differs from K=24"),
        (GEOM.replace("sh=1", "sh=0"), "sh='0' is out of range 1..4096"),
        (GEOM.replace("pt=0", "pt=-1"), "pt='-1' is out of range"),
        (GEOM.replace("C=24;", "C=8;").replace("kh=1;kw=1", "kh=3;kw=1").replace("H=3;", "H=1;"), "empty output"),
        (GEOM.replace("op=conv", "op=pool"), "unknown op 'pool'"),
    ],
)
def test_bad_conv_config_rejected(
    tmp_path: Path, weights: Weights, make_session: Session, conv_library: Path, ctx: str, message: str
) -> None:
    with pytest.raises(Exception, match=r"node 'conv': .*" + message):
        make_session(conv_model(tmp_path / "m.onnx", weights, ctx), kernel_library=str(conv_library))
