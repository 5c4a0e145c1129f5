"""x86 conv kernels (targets/x86/templates/conv.py) against a float64 numpy convolution.

Every format family (block shapes that change the tile sizes included) on geometries that hit every pixel-tile
case: P a multiple of the vector width, P ragged after whole tiles, P < vw, im2col with strides, dilations and
asymmetric pads; densities 0 .. 1 and every epilogue, at batch 1 and 3. One library for all: building is the slow part.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparsec.conv import ConvGeometry, runtime_geometry
from sparsec.formats import get_format
from sparsec.layer import Epilogue, Kernel
from sparsec.targets.x86.target import X86Target
from tests.targets.test_x86_kernels import CLIP, random_weight

C, N = 5, 29
FORMATS = ("csr", "bsr:16x1", "bsr:4x4", "bsr:1x4", "nm:2:4")
GEOMETRIES = (
    ConvGeometry(C, 7, 9),  # P=63: ragged
    ConvGeometry(C, 8, 8),  # P=64: whole vectors
    ConvGeometry(C, 2, 3),  # P=6 < vw
    ConvGeometry(C, 9, 11, 3, 3, 2, 1, 1, 2, 1, 0, 2, 1),  # strided, dilated, asymmetric pads
    ConvGeometry(C, 6, 6, 5, 5, pt=2, pl=2, pb=2, pr=2),
)
DENSITIES = (0.0, 0.3, 1.0)
EPILOGUES = ((False, False, "none"), (True, True, "relu"), (True, False, "silu"), (False, True, "hardswish"),
             (True, True, "clip"), (True, True, "sigmoid"))  # fmt: skip
CASES = [
    (fmt, g, DENSITIES[i % len(DENSITIES)], EPILOGUES[i % len(EPILOGUES)])
    for i, (fmt, g) in enumerate(itertools.product(FORMATS, GEOMETRIES))
]


def reference(x: np.ndarray, w: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """Direct convolution of x[B, C, H*W] with W[N, C*kh*kw] -> [B, N, OH*OW], float64."""
    b = x.shape[0]
    xp = np.pad(x.reshape(b, g.C, g.H, g.W).astype(np.float64), ((0, 0), (0, 0), (g.pt, g.pb), (g.pl, g.pr)))
    w4 = w.reshape(-1, g.C, g.kh, g.kw).astype(np.float64)
    y = np.zeros((b, w4.shape[0], g.OH, g.OW))
    for r, s in itertools.product(range(g.kh), range(g.kw)):
        rows = slice(r * g.dh, r * g.dh + g.sh * (g.OH - 1) + 1, g.sh)
        cols = slice(s * g.dw, s * g.dw + g.sw * (g.OW - 1) + 1, g.sw)
        y += np.einsum("bchw,nc->bnhw", xp[:, :, rows, cols], w4[:, :, r, s])
    return y.reshape(b, w4.shape[0], -1)


def activate(y: np.ndarray, act: str) -> np.ndarray:
    sig = 1 / (1 + np.exp(-y))
    table = {"none": y, "relu": np.maximum(y, 0), "silu": y * sig, "sigmoid": sig, "clip": np.clip(y, *CLIP),
             "hardswish": y * np.clip(y / 6 + 0.5, 0, 1)}  # fmt: skip
    return table[act]


def _build(cases: list[Any], prefix: str, seed: int, folder: Path) -> dict[str, Any]:
    """One x86 library holding a kernel per case, named ``prefix + index``, and each case's weight and packing."""
    import tvm

    rng = np.random.default_rng(seed)
    weights, specs = {}, []
    for i, (fmt, g, density, (bias, residual, act)) in enumerate(cases):
        w = random_weight(fmt, density, rng, shape=(N, g.K))
        packed = get_format(fmt).pack(w)
        arrays = tuple((k, tuple(v.shape), str(v.dtype)) for k, v in packed.items())
        epilogue = Epilogue(bias=bias, residual=residual, act=act, clip_min=CLIP[0], clip_max=CLIP[1])
        specs.append(Kernel(f"{prefix}{i}", fmt, g.K, N, arrays, epilogue=epilogue, conv=g, packed=packed))
        weights[f"{prefix}{i}"] = (w, packed)
    X86Target().build(specs, folder / "kernels.so")
    return {"lib": tvm.runtime.load_module(str(folder / "kernels.so")), "weights": weights}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _build(CASES, "c", 7, Path(tmp_path_factory.mktemp("x86conv")))


# Dynamic geometries (symbolic height and width): one kernel per case, run at sizes that hit every run-time tile
# case (P < vw, whole vectors, ragged after single vectors and after mu-vector tiles).
DYNAMIC = [
    (fmt, runtime_geometry(C, k, k, s, s, 1, 1, (p, p, p, p)), DENSITIES[i % 3], EPILOGUES[(i + 1) % len(EPILOGUES)])
    for i, (fmt, (k, s, p)) in enumerate(itertools.product(FORMATS, ((1, 1, 0), (3, 1, 1), (3, 2, 1))))
]
SIZES = ((2, 3), (4, 4), (7, 9), (16, 20), (1, 1))


@pytest.fixture(scope="module")
def built_dynamic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _build(DYNAMIC, "d", 8, Path(tmp_path_factory.mktemp("x86conv_dyn")))


@pytest.mark.parametrize("i", range(len(DYNAMIC)), ids=[f"{c[0]}-{c[1].kh}x{c[1].kw}s{c[1].sh}" for c in DYNAMIC])
def test_dynamic_conv_kernel_matches_numpy_at_every_size(built_dynamic: dict[str, Any], i: int) -> None:
    import dataclasses

    import tvm

    fmt, g0, _, (bias, residual, act) = DYNAMIC[i]
    w, packed = built_dynamic["weights"][f"d{i}"]
    rng = np.random.default_rng(i)
    for batch, (h, wd) in itertools.product((1, 2), SIZES):
        try:
            g = dataclasses.replace(g0, H=h, W=wd, dynamic=False)
        except ValueError:  # too small for this kernel (empty output)
            continue
        x = rng.standard_normal((batch, g.C, h, wd)).astype(np.float32)
        b = rng.standard_normal(N).astype(np.float32) if bias else None
        r = rng.standard_normal((batch, N, g.P)).astype(np.float32) if residual else None
        y = tvm.runtime.tensor(np.full((batch, N, g.P), np.nan, np.float32))
        args = [x, *packed.values(), *(a for a in (b, r) if a is not None)]
        built_dynamic["lib"][f"d{i}"](*(tvm.runtime.tensor(a) for a in args), y)
        ref = reference(x.reshape(batch, g.C, -1), w, g)
        ref = activate(ref + (b[None, :, None] if b is not None else 0) + (r if r is not None else 0), act)
        got = y.numpy()
        assert np.isfinite(got).all(), f"{h}x{wd} batch {batch}: some output not written"
        err = np.abs(got - ref).max() / max(np.abs(ref).max(), 1.0)
        assert err < 1e-4, f"{h}x{wd} batch {batch}: max relative error {err:.2e}"


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{c[0]}-{c[1].kh}x{c[1].kw}-P{c[1].P}-d{c[2]}" for c in CASES])
def test_conv_kernel_matches_numpy(built: dict[str, Any], i: int) -> None:
    import tvm

    fmt, g, _, (bias, residual, act) = CASES[i]
    w, packed = built["weights"][f"c{i}"]
    rng = np.random.default_rng(i)
    for batch in (1, 3):
        x = rng.standard_normal((batch, g.C, g.H * g.W)).astype(np.float32)
        b = rng.standard_normal(N).astype(np.float32) if bias else None
        r = rng.standard_normal((batch, N, g.P)).astype(np.float32) if residual else None
        y = tvm.runtime.tensor(np.full((batch, N, g.P), np.nan, np.float32))
        args = [x, *packed.values(), *(a for a in (b, r) if a is not None)]
        built["lib"][f"c{i}"](*(tvm.runtime.tensor(a) for a in args), y)
        ref = reference(x, w, g) + (b[None, :, None] if b is not None else 0) + (r if r is not None else 0)
        ref = activate(ref, act)
        got = y.numpy()
        assert np.isfinite(got).all(), f"batch {batch}: some output not written"
        err = np.abs(got - ref).max() / max(np.abs(ref).max(), 1.0)
        assert err < 1e-4, f"batch {batch}: max relative error {err:.2e}"
