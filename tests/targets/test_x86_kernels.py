"""x86 kernels against a float64 numpy reference, parametrized from the kernel table (targets/x86/target.py).

Every (format preset, applicable variant) pair is built at densities 0 .. 1 (N:M: its maximum and sparser) and with
every epilogue, on odd shapes (K=37, N=29: not multiples of any block or vector width), and run at M in {1, 3, 64}.
All kernels go into ONE library built once per module: building is the slow part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparsec.formats import family, get_format, integer_presets
from sparsec.layer import Epilogue, Kernel
from sparsec.targets.simd import table
from sparsec.targets.x86.target import VARIANTS, X86Target

K, N = 37, 29
MS = (1, 3, 5, 64, 133)  # both sides of the small-M split; 133: full tiles plus a ragged one
DENSITIES = (0.0, 0.01, 0.1, 0.5, 1.0)
# (bias, residual, act): every activation, every optional input; the density sweep cycles through them too.
EPILOGUES = (
    (False, False, "none"),
    (True, False, "relu"),
    (False, True, "gelu"),
    (True, True, "sigmoid"),
    (True, True, "clip"),
    (True, True, "gelu"),
)
CLIP = (-0.5, 0.75)
VW = X86Target().vector_width


def random_weight(
    fmt_name: str, density: float, rng: np.random.Generator, shape: tuple[int, int] = (N, K)
) -> np.ndarray:
    """A W[N, K] with the format's structure at about ``density`` (of the pattern's own maximum for N:M)."""
    return get_format(fmt_name).random(*shape, density, rng)


def supported_presets(vw: int) -> list[str]:
    return table.supported_presets(vw, VARIANTS)


def variants_for(fmt: str, vw: int) -> list[table.Variant]:
    return table.variants_for(fmt, vw, VARIANTS)


def kernel(name: str, fmt: str, packed: dict[str, np.ndarray], variant: str = "", **epilogue: Any) -> Kernel:
    f = get_format(fmt)
    arrays = tuple(f.array_specs(packed))
    return Kernel(name, fmt, K, N, arrays, epilogue=Epilogue(**epilogue), variant=variant, packed=packed)


def cases() -> list[tuple[str, str, float, tuple[bool, bool, str]]]:
    """(format, variant, density, epilogue) for every kernel the test library holds.

    Each (preset, variant) gets the density sweep with the epilogues cycling; the first preset of each template
    variant also gets every epilogue (the write-back code is per template variant, not per block shape), and only
    those carry gelu.
    """
    out = []
    first = set()
    for fmt in supported_presets(VW):
        for variant in variants_for(fmt, VW):
            # N:M densities are fractions of the n kept slots per group of m (1.0 = the pattern's maximum).
            densities = (1.0, 0.5, 0.1, 0.0) if family(fmt) == "nm" else DENSITIES
            if (family(fmt), variant.name) not in first:
                first.add((family(fmt), variant.name))
                cycle = EPILOGUES
                extra = [(0.5, epi) for epi in EPILOGUES]
            else:  # gelu compiles slowly (~1 s) and its code does not depend on the block shape
                cycle, extra = tuple(e for e in EPILOGUES if e[2] != "gelu"), []
            sweep = [(d, cycle[i % len(cycle)]) for i, d in enumerate(densities)] + extra
            out += [(fmt, variant.name, d, epi) for d, epi in sweep]
    return out


CASES = cases()


def symbol(i: int) -> str:
    return f"k{i:04d}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Packed weights, specs and the loaded library holding every case."""
    import tvm

    rng = np.random.default_rng(1234)
    weights, packs, specs = {}, {}, []
    for i, (fmt, variant, density, (bias, residual, act)) in enumerate(CASES):
        w = random_weight(fmt, density, rng)
        packed = get_format(fmt).pack(w)
        epilogue = {"bias": bias, "residual": residual, "act": act, "clip_min": CLIP[0], "clip_max": CLIP[1]}
        specs.append(kernel(symbol(i), fmt, packed, variant, **epilogue))
        weights[symbol(i)], packs[symbol(i)] = w, packed
    path = Path(tmp_path_factory.mktemp("x86")) / "kernels.so"
    X86Target().build(specs, path)
    return {"lib": tvm.runtime.load_module(str(path)), "weights": weights, "packs": packs, "path": path}


def reference(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, r: np.ndarray | None, act: str) -> np.ndarray:
    from math import erf

    y = x.astype(np.float64) @ w.astype(np.float64).T
    if b is not None:
        y = y + b
    if r is not None:
        y = y + r
    if act == "relu":
        return np.maximum(y, 0)
    if act == "gelu":
        return 0.5 * y * (1 + np.vectorize(erf)(y / np.sqrt(2)))
    if act == "sigmoid":
        return 1 / (1 + np.exp(-y))
    if act == "clip":
        return np.clip(y, *CLIP)
    return y


@pytest.mark.parametrize(
    "i", range(len(CASES)), ids=[f"{c[0]}-{c[1]}-d{c[2]}-{'-'.join(map(str, c[3]))}" for c in CASES]
)
def test_kernel_matches_numpy(built: dict[str, Any], i: int) -> None:
    import tvm

    _, _, _, (bias, residual, act) = CASES[i]
    rng = np.random.default_rng(i)
    w, packed = built["weights"][symbol(i)], built["packs"][symbol(i)]
    func = built["lib"][symbol(i)]
    for m in MS:
        x = rng.standard_normal((m, K)).astype(np.float32)
        b = rng.standard_normal(N).astype(np.float32) if bias else None
        r = rng.standard_normal((m, N)).astype(np.float32) if residual else None
        y = tvm.runtime.tensor(np.full((m, N), np.nan, np.float32))
        args = [x, *packed.values(), *(a for a in (b, r) if a is not None)]
        func(*(tvm.runtime.tensor(a) for a in args), y)
        ref = reference(x, w, b, r, act)
        got = y.numpy()
        assert np.isfinite(got).all(), f"M={m}: some output not written"
        err = np.abs(got - ref).max() / max(np.abs(ref).max(), 1.0)
        assert err < 1e-4, f"M={m}: max relative error {err:.2e}"


def test_every_preset_has_a_kernel() -> None:
    expected = {"csr", "bsr:1x16", "bsr:16x1", "bsr:4x4", "bsr:8x1", "bsr:1x8", "nm:2:4", "nm:1:4", "nm:4:8"}
    assert expected <= set(supported_presets(VW))
    assert not variants_for("dense", VW)


def test_variant_structure() -> None:
    """Each variant parallelizes over output rows and vectorizes its inner loop; optional args are dropped (an
    int8:1x4 kernel also takes X's zero point)."""
    from sparsec.targets.simd.instantiate import instantiate
    from sparsec.targets.x86.target import ACC_REGISTERS

    rng = np.random.default_rng(0)
    seen = set()
    for fmt in [*supported_presets(VW), *integer_presets()]:
        for v in variants_for(fmt, VW):
            if (v.family, v.name) in seen:
                continue
            seen.add((v.family, v.name))
            packed = get_format(fmt).pack(random_weight(fmt, 0.5, rng))
            func = instantiate(kernel("f", fmt, packed, v.name), VW, VARIANTS, ACC_REGISTERS)
            text = func.script()
            assert "T.parallel(" in text and "T.vectorized(" in text, (fmt, v.name)
            assert len(func.params) == 2 + len(packed) + (family(fmt) == "int8")
    assert seen == {(v.family, v.name) for v in VARIANTS}


def test_library_is_deterministic(built: dict[str, Any], tmp_path: Path) -> None:
    """Same specs -> byte-identical library (artifact sha256 stays stable across rebuilds)."""
    subset = [
        Kernel(
            "a", "csr", K, N, (("values", (3,), "float32"), ("indices", (3,), "int32"), ("indptr", (N + 1,), "int32"))
        ),
    ]
    X86Target().build(subset, tmp_path / "a.so")
    X86Target().build(subset, tmp_path / "b.so")
    assert (tmp_path / "a.so").read_bytes() == (tmp_path / "b.so").read_bytes()


@pytest.mark.skipif(X86Target().isa != "avx512", reason="the vpextrd pattern is AVX-512 code")
def test_csr_indices_are_scalar_loads() -> None:
    """Each csr index is one scalar load forming an address: with LLVM's SLP vectorizer on (the default), four went
    through one vector load and back to general registers lane by lane (vpextrd, two uops each on Zen 4), which cost
    5-15% of a csr kernel at M=1024 and 25-40% at M=1 (targets/x86/target.py, LLVM_OPTIONS)."""
    rng = np.random.default_rng(0)
    packed = get_format("csr").pack(random_weight("csr", 0.1, rng))
    lib = X86Target().compile([kernel("k_csr", "csr", packed, "blocked")])
    asm = "".join(m.inspect_source("asm") for m in (lib.mod, *lib.mod.imports) if m.kind == "llvm")
    assert "vfmadd231ps" in asm  # the kernel's FMAs are in the text searched
    assert "vpextrd" not in asm
