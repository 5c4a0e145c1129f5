"""Formats registry: pack/unpack round trips for every preset at the densities and odd sizes the kernels see."""

from __future__ import annotations

import numpy as np
import pytest

from sparsec.formats import get_format, list_presets

SHAPES = [(29, 37), (16, 16), (64, 48), (5, 3), (1, 40)]
DENSITIES = [0.0, 0.01, 0.1, 0.5, 1.0]


def conforming(w: np.ndarray, n: int, m: int) -> np.ndarray:
    """Keep the n largest of every m along K (what an N:M-pruned weight looks like)."""
    rows, k = w.shape
    g = -(-k // m)
    pad = np.zeros((rows, g * m), np.float32)
    pad[:, :k] = w
    grp = pad.reshape(rows, g, m)
    keep = np.argsort(-np.abs(grp), axis=2)[:, :, :n]
    mask = np.zeros_like(grp, bool)
    np.put_along_axis(mask, keep, True, axis=2)
    return (grp * mask).reshape(rows, -1)[:, :k].copy()


@pytest.mark.parametrize("name", list_presets())
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("density", DENSITIES)
def test_roundtrip(name: str, shape: tuple[int, int], density: float) -> None:
    rng = np.random.default_rng(hash((name, shape, density)) % 2**32)
    fmt = get_format(name)
    w = rng.standard_normal(shape).astype(np.float32)
    w[rng.random(shape) >= density] = 0.0
    if name.startswith("nm:"):
        w = conforming(w, fmt.n, fmt.m)  # type: ignore[attr-defined]
    if not fmt.fits(w):
        with pytest.raises(ValueError):
            fmt.pack(w)
        return
    packed = fmt.pack(w)
    assert list(packed) == list(fmt.array_names)
    assert all(a.flags.c_contiguous for a in packed.values())
    np.testing.assert_array_equal(fmt.unpack(packed, *shape), w)
    assert fmt.nnz_stored(packed) >= np.count_nonzero(w)


def test_bsr_layout_shifted_edges() -> None:
    """N=5, K=6 with 4x4 blocks: last block row starts at 1, last block column at 2 with columns 2..3 zeroed."""
    w = np.arange(1, 31, dtype=np.float32).reshape(5, 6)
    p = get_format("bsr:4x4").pack(w)
    assert p["indptr"].tolist() == [0, 2, 4]
    assert p["indices"].tolist() == [0, 2, 0, 2]
    assert np.all(p["data"][1][:, :2] == 0) and np.all(p["data"][1][:, 2:] == w[0:4, 4:6])
    np.testing.assert_array_equal(p["data"][2], w[1:5, 0:4])


def test_nm_positions_stay_inside_k() -> None:
    w = np.zeros((3, 5), np.float32)
    w[:, 4] = 1.0  # last group has one real column (K=5, M=4)
    p = get_format("nm:2:4").pack(w)
    cols = (np.arange(2).repeat(2) * 4)[None, :] + p["positions"]
    assert cols.max() < 5


def test_nm_rejects_nonconforming() -> None:
    fmt = get_format("nm:2:4")
    assert not fmt.fits(np.ones((2, 8), np.float32))
    with pytest.raises(ValueError, match="does not conform"):
        fmt.pack(np.ones((2, 8), np.float32))


@pytest.mark.parametrize("bad", ["bsr:0x4", "nm:4:2", "blocky", "bsr:4", "nm:2"])
def test_bad_names(bad: str) -> None:
    with pytest.raises(ValueError):
        get_format(bad)
