"""The EP refuses corrupt packed arrays and configs at session creation, naming the node and the array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .conftest import Weights
from .ep_models import Session, mlp_model, single_layer_model
from .onnx_models import SparseLayer, random_sparse
from .packing import bsr_pack, nm_pack

# ----------------------------------------------------------------------------------------------------------------
# corrupt packed arrays: session creation fails naming the node and the array


def _corrupt_csr(w: Weights, how: str) -> dict[str, np.ndarray]:
    p = {k: v.copy() for k, v in w.p1.items()}
    if how == "index_too_big":
        p["indices"][3] = w.K
    elif how == "index_negative":
        p["indices"][0] = -1
    elif how == "indptr_not_monotonic":
        p["indptr"][2], p["indptr"][3] = p["indptr"][3] + 1, p["indptr"][2]
    elif how == "indptr_not_from_zero":
        p["indptr"][0] = 1
    elif how == "indptr_wrong_end":
        p["indptr"][-1] -= 1
    elif how == "values_short":
        p["values"] = p["values"][:-1]
    elif how == "indptr_wrong_length":
        p["indptr"] = p["indptr"][:-1]
    elif how == "indices_int64":
        p["indices"] = p["indices"].astype(np.int64)
    return p


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("index_too_big", r"'fc1__indices' entry 3 = 24 is out of range"),
        ("index_negative", r"'fc1__indices' entry 0 = -1 is out of range"),
        ("indptr_not_monotonic", r"'fc1__indptr' is not monotonic"),
        ("indptr_not_from_zero", r"'fc1__indptr' must start at 0"),
        ("indptr_wrong_end", r"'fc1__indptr' ends at"),
        ("values_short", r"'fc1__indices' is int32\[\d+\], expected int32\[\d+\]"),
        ("indptr_wrong_length", r"'fc1__indptr' is int32\[16\], expected int32\[17\]"),
        ("indices_int64", r"unsupported element type int64|'fc1__indices' is"),
    ],
)
def test_corrupt_csr_rejected(tmp_path: Path, weights: Weights, make_session: Session, how: str, message: str) -> None:
    model = mlp_model(tmp_path / "m.onnx", weights, packed=_corrupt_csr(weights, how))
    with pytest.raises(Exception, match=r"SparsecEP: node 'fc1': .*" + message):
        make_session(model)


def test_wrong_input_count_rejected(tmp_path: Path, weights: Weights, make_session: Session) -> None:
    # bias=1 announced but no bias input given
    model = mlp_model(tmp_path / "m.onnx", weights, extra_ctx=";bias=1")
    with pytest.raises(Exception, match=r"node 'fc1': has 4 inputs.*needs 5"):
        make_session(model)


def _format_layer(fmt: str, packed: dict[str, np.ndarray], k: int, n: int) -> SparseLayer:
    # No kernel of these formats in the test library: a VALID layer gets as far as the kernel lookup, so the
    # "not found" error proves validation passed, while a corrupt one stops at validation.
    return SparseLayer("fmt", "X", "Y", "no_such_kernel", k, n, packed, fmt=fmt)


@pytest.mark.parametrize(("fmt", "r", "c"), [("bsr:4x1", 4, 1), ("bsr:3x5", 3, 5), ("bsr:1x8", 1, 8)])
def test_bsr_validation(tmp_path: Path, make_session: Session, fmt: str, r: int, c: int) -> None:
    rng = np.random.default_rng(3)
    n, k = 10, 22  # neither a multiple of R nor of C: exercises the shifted last block row / column
    good = bsr_pack(random_sparse(rng, n, k, 0.3), r, c)
    model = single_layer_model(tmp_path / "good.onnx", _format_layer(fmt, good, k, n))
    with pytest.raises(Exception, match="kernel function 'no_such_kernel' not found"):
        make_session(model)
    bad = {key: v.copy() for key, v in good.items()}
    bad["indices"][0] = k - c + 1  # block would read past column K
    model = single_layer_model(tmp_path / "bad.onnx", _format_layer(fmt, bad, k, n))
    with pytest.raises(Exception, match=r"'fmt__indices' entry 0 .* out of range"):
        make_session(model)
    bad = {key: v.copy() for key, v in good.items()}
    bad["data"] = bad["data"][:, :, :1] if c > 1 else bad["data"][:, :1, :]
    model = single_layer_model(tmp_path / "bad2.onnx", _format_layer(fmt, bad, k, n))
    with pytest.raises(Exception, match=r"'fmt__data' is float32\[.*expected float32"):
        make_session(model)


def test_nm_validation(tmp_path: Path, make_session: Session) -> None:
    rng = np.random.default_rng(4)
    n, k = 6, 10  # K not a multiple of M=4: the last group is short
    w = random_sparse(rng, n, k, 0.5)
    good = nm_pack(w, 2, 4)
    model = single_layer_model(tmp_path / "good.onnx", _format_layer("nm:2:4", good, k, n))
    with pytest.raises(Exception, match="kernel function 'no_such_kernel' not found"):
        make_session(model)
    for bad_pos in (4, 3):  # 4 >= M; 3 in the last group reads column 8+3 = 11 >= K
        bad = {key: v.copy() for key, v in good.items()}
        bad["positions"][0, -1] = bad_pos
        model = single_layer_model(tmp_path / "bad.onnx", _format_layer("nm:2:4", bad, k, n))
        with pytest.raises(Exception, match=r"'fmt__positions' entry 5 = \d is out of range"):
            make_session(model)


def test_bad_config_rejected(tmp_path: Path, weights: Weights, make_session: Session) -> None:
    model = mlp_model(tmp_path / "m.onnx", weights, fmt="coo")
    with pytest.raises(Exception, match=r"node 'fc1': unsupported format 'coo'"):
        make_session(model)
    model = mlp_model(tmp_path / "s.onnx", weights, extra_ctx=";scale=1")
    with pytest.raises(Exception, match=r"node 'fc1': scale is an int8:1x4 epilogue \(format csr\)"):
        make_session(model)


def test_int8_validation(tmp_path: Path, make_session: Session) -> None:
    """int8:1x4: four packed arrays (word positions within K/4, the shifted last one at K//4), then the uint8 zero
    point; a plain matmul only."""
    from onnx import TensorProto

    from sparsec.formats import get_format

    f = get_format("int8:1x4")
    n, k = 6, 10  # K not a multiple of 4: the last block is the shifted word K//4
    packed = dict(f.pack(f.random(n, k, 0.5, np.random.default_rng(5))))
    packed["x_zero_point"] = np.array([3], np.uint8)  # the input after the arrays

    def session(p: dict[str, np.ndarray], name: str, extra: str = "") -> None:
        layer = SparseLayer("fmt", "X", "Y", "no_such_kernel", k, n, p, fmt="int8:1x4", extra_ctx=extra)
        make_session(single_layer_model(tmp_path / name, layer, x_type=TensorProto.UINT8))

    with pytest.raises(Exception, match="kernel function 'no_such_kernel' not found"):
        session(packed, "good.onnx")
    bad = {key: v.copy() for key, v in packed.items()}
    bad["indices"][0] = k // 4 + 1
    with pytest.raises(Exception, match=r"'fmt__indices' entry 0 = 3 is out of range \(word 0 <= w <= 2\)"):
        session(bad, "bad.onnx")
    with pytest.raises(Exception, match=r"format int8:1x4 runs matmuls only \(op='conv'\)"):
        session(packed, "conv.onnx", ";op=conv")
    short = {key: v for key, v in packed.items() if key != "x_zero_point"}
    with pytest.raises(Exception, match=r"has 5 inputs, format int8:1x4 .* needs 6"):
        session(short, "short.onnx")
    # the scale epilogue: one float32 input after the zero point, 1 or N values
    with pytest.raises(Exception, match=r"has 6 inputs, format int8:1x4 with scale .* needs 7"):
        session(packed, "no_scale.onnx", ";scale=1")
    with pytest.raises(Exception, match=r"scale='5' is not 1 or N=6"):
        session(packed | {"scale": np.ones(5, np.float32)}, "five.onnx", ";scale=5")
    with pytest.raises(Exception, match=r"scale 'fmt__scale' must be float32 with 6 element\(s\), got float32\[1\]"):
        session(packed | {"scale": np.ones(1, np.float32)}, "short_scale.onnx", ";scale=6")
    with pytest.raises(Exception, match="kernel function 'no_such_kernel' not found"):
        session(packed | {"scale": np.ones(6, np.float32)}, "scaled.onnx", ";scale=6;act=relu")
