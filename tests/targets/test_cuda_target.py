"""CUDA target end to end on a host without a GPU: registry and --arch, `sparsec compile --target cuda` writing the
device code, launch metadata and hashes, and one-line refusals wherever something would have to run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from sparsec.artifact import read_manifest, sha256_file
from sparsec.cli import main
from sparsec.errors import SparsecError
from sparsec.targets.cuda.driver import driver_problem
from sparsec.targets.cuda.toolchain import find_nvcc
from sparsec.targets.registry import get_target
from tests.targets.arm_models import for_format, mlp

EM_CUDA = 190  # ELF e_machine of a cubin
DEVICE_FILES = ("kernels.fatbin", "kernels.ptx", "kernels.cubin", "kernels.cu", "kernels.json", "kernels.launch")


def skip_without_nvcc() -> None:
    if not find_nvcc():
        pytest.skip("nvcc (CUDA toolkit) not found: install it or set SPARSEC_NVCC to check device code")


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith("[sparsec] ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_registry_and_arch() -> None:
    assert get_target("cuda").describe()["arch"] == "sm_80"
    d = get_target("cuda", arch="sm_90").describe()
    assert (d["name"], d["arch"], d["ptx_arch"]) == ("cuda", "sm_90", "compute_90")
    for name, cpu, arch, message in [
        ("cuda", "", "sm_75", "unknown --arch 'sm_75' for --target cuda (known: sm_80, sm_86, sm_89, sm_90)"),
        ("x86", "", "sm_80", "--arch applies to --target cuda only"),
        ("arm", "", "sm_80", "--arch applies to --target cuda only"),
        ("cuda", "cortex-a76", "", "--cpu applies to --target arm only"),
    ]:
        with pytest.raises(SparsecError) as e:
            get_target(name, cpu, arch)
        assert message in str(e.value) and "\n" not in str(e.value)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cuda")
    onnx.save(mlp(), str(d / "mlp.onnx"))
    onnx.save(for_format(mlp(), "nm:2:4"), str(d / "mlp24.onnx"))
    return d


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--target", "cuda", "--arch", "sm_70"], "unknown --arch 'sm_70'"),
        (["--target", "x86", "--arch", "sm_90"], "--arch applies to --target cuda only"),
        (["--target", "cuda", "--verify"], "--verify: cannot run cuda code on this host"),
        (["--target", "cuda", "--tune"], "--tune is not available for --target cuda"),
    ],
)
def test_compile_refusals_are_one_line(models: Path, args: list[str], match: str) -> None:
    if "--verify" in args and not driver_problem():
        pytest.skip("this host has an NVIDIA GPU: --verify runs")
    out = models / "refused.sparsec"
    code, _, err = run("compile", str(models / "mlp.onnx"), "-o", str(out), *args)
    assert code == 2 and match in one_error_line(err)
    assert not out.exists()


@pytest.fixture(scope="module")
def artifact(models: Path) -> tuple[Path, str]:
    skip_without_nvcc()
    out = models / "mlp.sparsec"
    code, stdout, err = run("compile", str(models / "mlp.onnx"), "--target", "cuda", "--arch", "sm_90", "-o", str(out))
    assert code == 0, err
    return out, stdout + err


def test_artifact_has_device_code_metadata_and_hashes(artifact: tuple[Path, str]) -> None:
    folder, log = artifact
    assert "NOT verified" in log
    manifest = read_manifest(folder)
    assert manifest["kernel_library"] == "kernels.fatbin"
    assert manifest["target"]["arch"] == "sm_90" and manifest["target"]["ptx_arch"] == "compute_90"
    for name in (*DEVICE_FILES, "model.onnx"):
        assert manifest["files"][name] == sha256_file(folder / name), name
    cubin = (folder / "kernels.cubin").read_bytes()
    assert cubin[:4] == b"\x7fELF" and int.from_bytes(cubin[18:20], "little") == EM_CUDA
    assert ".target sm_90" in (folder / "kernels.ptx").read_text()
    meta = json.loads((folder / "kernels.json").read_text())
    layers = [la for la in manifest["layers"] if la["format"] != "dense"]
    assert meta["arch"] == "sm_90" and len(meta["kernels"]) == len(layers) == 2
    for k in meta["kernels"]:
        assert k["spill_bytes"] == 0 and k["local_bytes"] == 0
        assert k["params"][0] == "X" and k["params"][-1] == "M" and "Y" in k["params"]
    # the EP's table: same entries and parameter order, plus the ABI order of the arguments it is called with
    table = [line.split() for line in (folder / "kernels.launch").read_text().splitlines()]
    assert [(t[0], t[1], t[8].split(",")) for t in table] == [
        (k["symbol"], k["entry"], k["params"]) for k in meta["kernels"]
    ]
    for t in table:
        assert t[7].split(",") == ["X", "data", "indices", "indptr", "bias", "Y"] or t[7].startswith("X,values"), t


def test_second_compile_restores_device_files_from_the_cache(
    artifact: tuple[Path, str], models: Path, tmp_path: Path
) -> None:
    folder, _ = artifact
    again = tmp_path / "again.sparsec"
    code, _, err = run("compile", str(models / "mlp.onnx"), "--target", "cuda", "--arch", "sm_90", "-o", str(again))
    assert code == 0 and "found in the cache" in err, err
    for name in DEVICE_FILES:
        assert (again / name).read_bytes() == (folder / name).read_bytes(), name


def test_nm24_forced_uses_sparse_tensor_cores(models: Path) -> None:
    skip_without_nvcc()
    out = models / "mlp24.sparsec"
    code, _, err = run("compile", str(models / "mlp24.onnx"), "--target", "cuda", "--format", "nm:2:4", "-o", str(out))
    assert code == 0, err
    meta = json.loads((out / "kernels.json").read_text())
    assert {k["format"] for k in meta["kernels"]} == {"nm:2:4"} and all(k["lossy"] for k in meta["kernels"])
    assert "mma.sp" in (out / "kernels.ptx").read_text()


def test_auto_never_picks_the_lossy_nm_kernel(models: Path) -> None:
    from sparsec.inspect import inspect_model

    report = inspect_model(models / "mlp24.onnx", "cuda")
    assert report["weights"] and all(not str(r["format"]).startswith("nm") for r in report["weights"]), report


def test_running_a_cuda_artifact_here_is_one_line(artifact: tuple[Path, str], tmp_path: Path) -> None:
    from sparsec.runtime import InferenceSession

    folder, _ = artifact
    if not driver_problem():
        pytest.skip("this host has an NVIDIA GPU: the artifact runs (tests/targets/test_cuda_gpu.py)")
    with pytest.raises(SparsecError) as e:
        InferenceSession(folder)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("sparsec: this artifact targets CUDA sm_90")
    assert "no NVIDIA driver (libcuda.so.1) was found" in msg or "failed to initialize" in msg
    np.save(tmp_path / "x.npy", np.zeros((2, 64), np.float32))
    code, _, err = run("run", str(folder), "--input", f"x={tmp_path / 'x.npy'}")
    assert code == 2 and "cannot run it on this host" in one_error_line(err)
    code, _, err = run("bench", str(folder), "--baseline", str(folder.parent / "mlp.onnx"))
    assert code == 2 and "targets CUDA sm_90" in one_error_line(err)
