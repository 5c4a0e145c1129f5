"""sparsec prune, per weight: pattern parsing and exact magnitude pruning (unstructured, blocks, N:M)."""

from __future__ import annotations

import numpy as np
import pytest

from sparsec.errors import SparsecError
from sparsec.prune import PrunePattern, parse_pattern, prune_weight
from tests.prune_helpers import check_nm, rand

# ------------------------------------------------------------------------------------------------ parse_pattern


@pytest.mark.parametrize(
    "text,expected",
    [
        ("unstructured:0.9", PrunePattern("unstructured", sparsity=0.9)),
        ("unstructured:0", PrunePattern("unstructured", sparsity=0.0)),
        ("unstructured:.5", PrunePattern("unstructured", sparsity=0.5)),
        (" unstructured:0.25 ", PrunePattern("unstructured", sparsity=0.25)),
        ("block:4x4:0.9", PrunePattern("block", sparsity=0.9, rows=4, cols=4)),
        ("block:1x64:0.5", PrunePattern("block", sparsity=0.5, rows=1, cols=64)),
        ("nm:2:4", PrunePattern("nm", n=2, m=4)),
        ("nm:1:255", PrunePattern("nm", n=1, m=255)),
    ],
)
def test_parse_pattern_good(text: str, expected: PrunePattern) -> None:
    got = parse_pattern(text)
    assert got == expected
    assert parse_pattern(str(got)) == got  # str() is a valid spelling of the same pattern


@pytest.mark.parametrize(
    "bad",
    [
        "random:0.5",
        "",
        "unstructured",
        "unstructured:1.0",
        "unstructured:1",
        "unstructured:-0.1",
        "unstructured:.",
        "unstructured:0.5.1",
        "unstructured:nan",
        "block:0x4:0.9",
        "block:4x65:0.9",
        "block:4x4",
        "block:4:0.9",
        "nm:4:2",
        "nm:2:2",
        "nm:0:4",
        "nm:2:256",
        "nm:2",
        "NM:2:4",
        "unstructured:0.5\nnm:2:4",
    ],
)
def test_parse_pattern_bad_is_one_line(bad: str) -> None:
    with pytest.raises(SparsecError) as e:
        parse_pattern(bad)
    msg = str(e.value)
    assert "pattern" in msg and "\n" not in msg
    for spelling in ("unstructured:S", "block:RxC:S", "nm:N:M"):
        assert spelling in msg


# ------------------------------------------------------------------------------------------------ prune_weight


@pytest.mark.parametrize("shape", [(37, 53), (1, 7), (64, 64), (5, 1)])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99])
def test_unstructured_exact_count_and_largest(shape: tuple[int, int], sparsity: float) -> None:
    w = rand(*shape)
    out = prune_weight(w, parse_pattern(f"unstructured:{sparsity}"))
    assert out.dtype == np.float32 and out.shape == w.shape
    kept = out != 0
    assert kept.sum() == round((1 - sparsity) * w.size)
    np.testing.assert_array_equal(out[kept], w[kept])  # kept values untouched
    if kept.any() and not kept.all():
        assert np.abs(w[~kept]).max() <= np.abs(w[kept]).min()


def test_unstructured_ties_are_deterministic() -> None:
    w = np.ones((6, 7), np.float32)
    w[0, 0] = 5.0
    out = prune_weight(w, parse_pattern("unstructured:0.5"))
    keep = round(0.5 * w.size)
    assert np.count_nonzero(out) == keep
    assert out[0, 0] == 5.0
    # among equal magnitudes the earliest positions (row-major) win
    assert np.flatnonzero(out.ravel()).tolist() == list(range(keep))
    np.testing.assert_array_equal(out, prune_weight(w, parse_pattern("unstructured:0.5")))


def test_prune_weight_does_not_modify_input() -> None:
    w = rand(8, 8)
    copy = w.copy()
    prune_weight(w, parse_pattern("unstructured:0.9"))
    np.testing.assert_array_equal(w, copy)


def blocks_of(a: np.ndarray, r: int, c: int) -> list[tuple[slice, slice]]:
    """The (partial at the edges) RxC tiles of a 2-D array, row-major."""
    n, k = a.shape
    return [(slice(i, i + r), slice(j, j + c)) for i in range(0, n, r) for j in range(0, k, c)]


@pytest.mark.parametrize("shape", [(32, 48), (37, 53), (3, 70)])
@pytest.mark.parametrize("r,c", [(4, 4), (1, 16), (8, 1), (3, 5)])
def test_block_all_or_nothing_and_block_sparsity(shape: tuple[int, int], r: int, c: int) -> None:
    w = rand(*shape, seed=1)
    out = prune_weight(w, parse_pattern(f"block:{r}x{c}:0.75"))
    tiles = blocks_of(w, r, c)
    kept, dropped = [], []
    for t in tiles:
        if np.any(out[t] != 0):
            np.testing.assert_array_equal(out[t], w[t])  # a kept block is untouched
            kept.append(float(np.linalg.norm(w[t])))
        else:
            dropped.append(float(np.linalg.norm(w[t])))
    assert len(kept) == round(0.25 * len(tiles))
    assert max(dropped) <= min(kept)  # ranked by L2 norm


def test_block_prunes_by_norm_not_single_values() -> None:
    w = np.zeros((4, 8), np.float32)
    w[:2, :2] = 10.0  # one big value block
    w[2:, 2:4] = [[1.0, 1.0], [1.0, 1.0]]
    w[0, 6] = 3.0  # a single large value in an otherwise empty block: norm 3 < norm 20 and > norm 2
    out = prune_weight(w, parse_pattern("block:2x2:0.75"))  # 8 blocks, keep 2
    assert np.count_nonzero(out) == 5
    assert out[0, 0] == 10.0 and out[0, 6] == 3.0 and out[2, 2] == 0.0


@pytest.mark.parametrize("shape", [(16, 64), (37, 53), (3, 2)])
@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8), (1, 2), (3, 7)])
def test_nm_groups_along_k(shape: tuple[int, int], n: int, m: int) -> None:
    w = rand(*shape, seed=2)
    out = prune_weight(w, parse_pattern(f"nm:{n}:{m}"))
    check_nm(w, out, n, m)


def test_nm_partial_last_group_keeps_real_values() -> None:
    w = np.array([[1.0, 2.0, 3.0, 4.0, -0.5]], np.float32)  # K = 5: second group has one real entry
    out = prune_weight(w, parse_pattern("nm:2:4"))
    np.testing.assert_array_equal(out, [[0.0, 0.0, 3.0, 4.0, -0.5]])
