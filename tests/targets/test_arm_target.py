"""ARM target structure: registry and --cpu, the NEON schedule table, the aarch64 kernel library and the artifact
(every file an app needs, listed with its sha256), and the verification policy when qemu is missing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from sparsec.artifact import read_manifest, sha256_file
from sparsec.compiler import compile_model
from sparsec.errors import SparsecError
from sparsec.formats import get_format
from sparsec.layer import Kernel
from sparsec.options import CompileOptions
from sparsec.targets.arm.target import ACC_REGISTERS, VARIANTS, VECTOR_WIDTH
from sparsec.targets.registry import get_target
from sparsec.targets.simd.table import Variant, choose, supported_presets
from sparsec.targets.simd.templates.bsr import CHAINS
from sparsec.targets.x86.target import VARIANTS as X86
from tests.targets.arm_models import mlp, needs_cross

EM_AARCH64 = 183  # ELF e_machine


def elf_machine(path: Path) -> int:
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF", f"{path.name} is not an ELF file"
    return int.from_bytes(head[18:20], "little")


def spec(fmt: str, k: int = 64, n: int = 48) -> Kernel:
    w = np.zeros((n, k), np.float32)
    w[:, ::4] = 1.0  # one nonzero per 4 inputs: conforms to every N:M preset too
    f = get_format(fmt)
    packed = f.pack(w)
    return Kernel(f"k_{fmt.replace(':', '_')}", fmt, k, n, tuple(f.array_specs(packed)), packed=packed)


def arm_presets() -> list[str]:
    return supported_presets(VECTOR_WIDTH, VARIANTS)


def arm_choose(k: Kernel) -> Variant:
    return choose(k, VECTOR_WIDTH, VARIANTS)


def test_registry_and_describe() -> None:
    t = get_target("arm")
    d = t.describe()
    assert (d["name"], d["arch"], d["isa"], d["vector_width"], d["cpu"]) == ("arm", "aarch64", "neon", 4, "generic")
    assert d["llvm_target"] == {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
    assert get_target("arm", "cortex-a76").describe()["llvm_target"]["mcpu"] == "cortex-a76"


@pytest.mark.parametrize(
    ("name", "cpu", "message"),
    [("arm", "cortex-a99", "unknown --cpu 'cortex-a99' for --target arm"), ("x86", "cortex-a76", "--target arm only")],
)
def test_bad_cpu_is_one_line(name: str, cpu: str, message: str) -> None:
    with pytest.raises(SparsecError, match=message) as e:
        get_target(name, cpu)
    assert "\n" not in str(e.value)


def test_cli_bad_cpu_exit_2(tmp_path: Path) -> None:
    src = tmp_path / "m.onnx"
    onnx.save(mlp(), str(src))
    cmd = [sys.executable, "-m", "sparsec.cli", "compile", str(src), "--target", "arm", "--cpu", "bogus"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and res.stderr.startswith("error: unknown --cpu")
    assert not (tmp_path / "m.sparsec").exists()


def test_every_sparse_family_has_a_neon_kernel() -> None:
    presets = arm_presets()
    assert {"csr", "bsr:16x1", "bsr:4x4", "bsr:1x16", "bsr:8x1", "nm:2:4"} <= set(presets)


@pytest.mark.parametrize(
    ("fmt", "variant", "mu"),
    [("csr", "blocked", 8), ("nm:2:4", "tiled", 16), ("bsr:16x1", "rows_blocked", 4), ("bsr:4x4", "rows_blocked", 16),
     ("bsr:1x16", "blocked", 4), ("bsr:8x1", "rows_blocked", 8)],
)  # fmt: skip
def test_neon_schedule_choices(fmt: str, variant: str, mu: int) -> None:
    """The NEON table, not x86's: 4 lanes and tiles sized for 32 x 128-bit registers (16 accumulators)."""
    v = arm_choose(spec(fmt))
    assert (v.name, v.mu(get_format(fmt), VECTOR_WIDTH)) == (variant, mu)


def test_tiles_fit_the_register_file() -> None:
    """Accumulator registers per tile never exceed ACC_REGISTERS (16 of NEON's 32), for every preset."""
    for fmt in arm_presets():
        f = get_format(fmt)
        for v in (x for x in VARIANTS if x.family == fmt.split(":")[0] and x.applies(f, VECTOR_WIDTH)):
            mu = v.mu(f, VECTOR_WIDTH)
            if v.name in ("rows", "rows_blocked"):  # mu rows of X x R/4 vectors of a block row
                regs = mu * f.r // VECTOR_WIDTH
            elif (v.family, v.name) == ("bsr", "xt"):
                regs = mu * f.r
            elif (v.family, v.name) == ("bsr", "blocked"):  # partial sums x R rows x mu vectors
                partials = max(1, min(CHAINS // (f.r * mu), f.c if f.c > 1 else CHAINS))
                regs = partials * f.r * mu
            elif v.name == "blocked":  # csr, nm: split partial sums x mu vectors
                regs = v.split * mu
            else:
                regs = mu
            assert regs <= ACC_REGISTERS, (fmt, v.name, mu)


def test_neon_tir_uses_four_lanes() -> None:
    """Vector loops are 4 float32 lanes (one 128-bit register) or whole tiles of them (a 16x1 block row: 16 lanes =
    4 registers; N:M's tile write-back: mu * 4 lanes)."""
    import re

    from sparsec.targets.simd.instantiate import build_module

    def extents(fmts: list[str], vw: int, table: tuple, acc: int = ACC_REGISTERS) -> set[int]:
        text = build_module([spec(f) for f in fmts], vw, table, acc).script()
        return {int(x) for x in re.findall(r"T\.vectorized\((?:T\.int64\()?(\d+)", text)}

    assert extents(["csr"], VECTOR_WIDTH, VARIANTS) == {4}
    # 1x16: the few-rows path runs along a block's 16 columns (4 registers); a block row of height 1 stores lanes of 1
    assert extents(["bsr:1x16"], VECTOR_WIDTH, VARIANTS) == {1, 4, 16}
    assert extents(["bsr:16x1"], VECTOR_WIDTH, VARIANTS) == {16}
    assert extents(["nm:2:4"], VECTOR_WIDTH, VARIANTS) == {4, ACC_REGISTERS * VECTOR_WIDTH}
    assert extents(["csr"], 16, X86, 8) == {16}  # the AVX-512 instantiation of the same template differs
    assert choose(spec("csr"), 16, X86).mu(get_format("csr"), 16) != arm_choose(spec("csr")).mu(get_format("csr"), 4)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("arm")
    onnx.save(mlp(), str(tmp / "m.onnx"))
    compile_model(tmp / "m.onnx", tmp / "m.sparsec", CompileOptions(target="arm", format="csr", verify=False))
    return tmp / "m.sparsec"


@needs_cross
def test_artifact_files_are_aarch64_and_listed(artifact: Path) -> None:
    manifest = read_manifest(artifact)  # verifies every sha256
    files = set(manifest["files"])
    assert files == {"model.onnx", "kernels.so", "libsparsec_ep.so", "libtvm_runtime.so", "libtvm_ffi.so"}
    assert {p.name for p in artifact.iterdir()} == files | {"manifest.json"}
    for name in files - {"model.onnx"}:
        assert elf_machine(artifact / name) == EM_AARCH64, name
        assert manifest["files"][name] == sha256_file(artifact / name)
    assert manifest["target"]["name"] == "arm" and manifest["target"]["arch"] == "aarch64"
    assert [la["format"] for la in manifest["layers"]] == ["csr", "csr"]


@needs_cross
def test_ep_finds_its_runtime_beside_it(artifact: Path) -> None:
    """The shipped EP needs libtvm_ffi.so and looks for it next to itself ($ORIGIN), nowhere on this machine."""
    readelf = shutil.which("aarch64-linux-gnu-readelf") or shutil.which("readelf")
    assert readelf is not None
    dyn = subprocess.run([readelf, "-d", str(artifact / "libsparsec_ep.so")], capture_output=True, text=True).stdout
    assert "[libtvm_ffi.so]" in dyn
    assert "runpath: [$ORIGIN]" in dyn.replace("Library runpath", "runpath")


@needs_cross
def test_kernels_use_neon_fma(artifact: Path) -> None:
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    if objdump is None:
        pytest.skip("aarch64-linux-gnu-objdump missing (binutils-aarch64-linux-gnu)")
    asm = subprocess.run([objdump, "-d", str(artifact / "kernels.so")], capture_output=True, text=True).stdout
    assert asm.count("fmla\tv") > 20 and ".4s" in asm


def test_verification_policy_without_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No qemu: the default compile says verification was skipped; an explicit --verify is a one-line error."""
    from sparsec.targets.arm import target as arm_target

    monkeypatch.setattr(arm_target, "qemu_missing", lambda: "qemu-aarch64 not found on PATH")
    monkeypatch.setattr(arm_target.ArmTarget, "build", lambda self, specs, out, progress=None: out.write_bytes(b""))
    monkeypatch.setattr(arm_target.ArmTarget, "bundle", lambda self, folder, progress=None: None)
    onnx.save(mlp(), str(tmp_path / "m.onnx"))
    with pytest.raises(SparsecError, match="--verify: cannot run arm code on this host: qemu-aarch64 not found"):
        compile_model(tmp_path / "m.onnx", tmp_path / "a.sparsec", CompileOptions(target="arm", verify=True))
    assert not (tmp_path / "a.sparsec").exists()
    res = compile_model(tmp_path / "m.onnx", tmp_path / "b.sparsec", CompileOptions(target="arm", format="csr"))
    assert res.unverified and "NOT verified: qemu-aarch64 not found" in res.summary()
    assert not res.errors
    assert json.loads((tmp_path / "b.sparsec" / "manifest.json").read_text())["target"]["name"] == "arm"


def test_missing_cross_compiler_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No aarch64-linux-gnu-g++: a one-line error naming the packages, and no artifact left behind."""
    from sparsec.targets.arm import toolchain

    real_which = shutil.which
    monkeypatch.setattr(toolchain.shutil, "which", lambda n: None if n == toolchain.CROSS_CXX else real_which(n))
    onnx.save(mlp(), str(tmp_path / "m.onnx"))
    message = r"aarch64-linux-gnu-g\+\+ not found on PATH.*g\+\+-aarch64-linux-gnu"
    with pytest.raises(SparsecError, match=message) as e:
        compile_model(tmp_path / "m.onnx", tmp_path / "m.sparsec", CompileOptions(target="arm", format="csr"))
    assert "\n" not in str(e.value)
    assert not (tmp_path / "m.sparsec").exists() and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
