"""The CUDA kernels' arithmetic on the CPU (no GPU here): the nm:2:4 mma.sp register encoding and the BSR chunked
staging, each against a float64 reference on random inputs, and each shown to catch a deliberately wrong encoding."""

from __future__ import annotations

import types

import numpy as np
import pytest

from sparsec.formats import get_format
from sparsec.targets.cuda import emulate, mma_layout
from tests.targets.cuda_cases import weight

# fp16 keeps 11 significant bits, bf16 8: relative error of a K-long dot product of rounded inputs
TOL = {"float16": 2e-3, "bfloat16": 1.5e-2}


def nm24_weight(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """2:4 weights with some groups holding one or no nonzero (the packing then leaves unordered/equal slots)."""
    w = weight("nm:2:4", k, n, int(rng.integers(1 << 30)))
    w[rng.random(w.shape) < 0.25] = 0
    perm = np.stack([rng.permutation(4) for _ in range(-(-k // 4))])  # move the kept pair within each group
    cols = (np.arange(-(-k // 4))[:, None] * 4 + perm).reshape(-1)
    keep = cols < k
    out = np.zeros_like(w)
    out[:, cols[keep]] = w[:, np.arange(len(cols))[keep]] if len(cols) == k else w[:, : keep.sum()]
    return out


def rel_err(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-30))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize(("m", "k", "n"), [(1, 16, 16), (5, 40, 23), (9, 50, 17), (16, 64, 32)])
def test_nm24_kernel_math_matches_float64(dtype: str, m: int, k: int, n: int) -> None:
    rng = np.random.default_rng(m * 1000 + k + n)
    w = nm24_weight(rng, n, k)
    packed = get_format("nm:2:4").pack(w)
    x = rng.standard_normal((m, k)).astype(np.float32)
    y = emulate.nm24_product(x, packed["values"], packed["positions"], dtype)
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    assert rel_err(y, ref) < TOL[dtype]


def test_packing_leaves_slots_that_need_reencoding() -> None:
    """The re-encoding is exercised: the nm packing does produce decreasing and equal position pairs."""
    rng = np.random.default_rng(3)
    pos = get_format("nm:2:4").pack(nm24_weight(rng, 32, 64))["positions"].astype(int)
    assert (pos[:, 0::2] > pos[:, 1::2]).any()


def _layout(**overrides: object) -> types.ModuleType:
    wrong = types.ModuleType("wrong_layout")
    wrong.__dict__.update({k: v for k, v in vars(mma_layout).items() if not k.startswith("__")})
    wrong.__dict__.update(overrides)
    return wrong


@pytest.mark.parametrize(
    "overrides",
    [
        {"meta_shift": lambda lane, reg: reg * 16 + (3 - lane % 4) * 4},  # groups in reverse order
        {"a_row": lambda lane, reg: lane // 4 * 2 + reg},  # rows interleaved instead of g / g+8
        {"canon_pos": lambda p0, p1, slot, where, minimum: p0 if slot == 0 else p1},  # no re-encoding
    ],
    ids=["metadata-shift", "a-rows", "no-reencoding"],
)
def test_wrong_encoding_is_caught(overrides: dict[str, object]) -> None:
    rng = np.random.default_rng(7)
    w = nm24_weight(rng, 32, 64)
    packed = get_format("nm:2:4").pack(w)
    x = rng.standard_normal((8, 64)).astype(np.float32)
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    try:
        y = emulate.nm24_product(x, packed["values"], packed["positions"], "float16", _layout(**overrides))
    except ValueError as e:  # the instruction model rejects invalid metadata
        assert "invalid mma.sp metadata" in str(e)
        return
    assert rel_err(y, ref) > 1e-2


def test_mma_sp_model_rejects_invalid_metadata() -> None:
    z = np.zeros((32, 2), np.uint32)
    e = np.full(32, 0b0101, np.uint32)  # group 0 of row 0: positions (1, 1)
    with pytest.raises(ValueError, match="invalid mma.sp metadata"):
        emulate.mma_sp(z, z, np.zeros((32, 4), np.float32), e, "float16")


@pytest.mark.parametrize(
    ("fmt", "m", "k", "n"),
    [("bsr:4x4", 7, 130, 36), ("bsr:32x2", 3, 9000, 64), ("bsr:32x3", 2, 9001, 40), ("bsr:1x16", 5, 96, 20)],
)
def test_bsr_chunked_staging_matches_float64(fmt: str, m: int, k: int, n: int) -> None:
    r, c = (int(v) for v in fmt.split(":")[1].split("x"))
    w = weight(fmt, k, n, 5)
    packed = get_format(fmt).pack(w)
    x = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    assert rel_err(emulate.bsr_product(x, packed, n, r, c), ref) < 1e-5


def test_bsr_short_halo_is_caught() -> None:
    """Blocks starting in a chunk's last column read C-1 columns past it: without the halo the product is wrong."""
    fmt, m, k, n = "bsr:32x3", 2, 9001, 40
    w = weight(fmt, k, n, 5, density=1.0)  # every block: one of them straddles a chunk edge
    packed = get_format(fmt).pack(w)
    x = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    from sparsec.targets.cuda.templates import bsr

    kc = bsr.chunk(k, 32, 3)
    assert np.isin(packed["indices"] % kc, [kc - 2, kc - 1]).any(), "the case must have a block straddling a chunk edge"
    assert rel_err(emulate.bsr_product(x, packed, n, 32, 3), ref) < 1e-5
    assert rel_err(emulate.bsr_product(x, packed, n, 32, 3, halo=0), ref) > 1e-3
