"""ARM numbers: artifacts compiled for aarch64 run in the example app (examples/arm_host: ORT for aarch64 + the
artifact's EP) under qemu-aarch64, compared with ORT x86 on the original model on fresh random inputs.

MLP (Relu / Sigmoid epilogues) and transformer FFN (GELU, residual, Gemm head) in csr, bsr and N:M, at several
batch sizes including ones that are not multiples of the vector width or the tiles.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from sparsec.compiler import compile_model
from sparsec.errors import SparsecError
from sparsec.options import CompileOptions
from sparsec.verify import TOLERANCE, random_feeds, reference_outputs, relative_error
from tests.targets.arm_models import MODELS, for_format, mlp, needs_qemu

pytestmark = needs_qemu
FORMATS = ("csr", "bsr:4x4", "bsr:16x1", "nm:2:4")
SHAPES = {"mlp": ({"batch": 1}, {"batch": 37}), "ffn": ({"batch": 1, "seq": 3}, {"batch": 2, "seq": 9})}


def run_on_arm(artifact: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    from sparsec.targets.arm.qemu import run_artifact

    return run_artifact(artifact, feeds)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_matches_ort_x86(name: str, fmt: str, tmp_path: Path) -> None:
    original = for_format(MODELS[name](), fmt)
    onnx.save(original, str(tmp_path / "m.onnx"))
    art = compile_model(tmp_path / "m.onnx", tmp_path / "m.sparsec", CompileOptions(target="arm", format=fmt)).artifact
    layers = json.loads((art / "manifest.json").read_text())["layers"]
    assert [la["format"] for la in layers] == [fmt] * len(layers)  # every layer really runs on an ARM kernel
    for i, dims in enumerate(SHAPES[name]):
        feeds = random_feeds(original, dims, seed=100 + i)
        got = run_on_arm(art, feeds)
        ref = reference_outputs(original, feeds)
        assert len(got) == len(ref)
        for g, r in zip(got, ref, strict=True):
            assert g.shape == r.shape and g.dtype == r.dtype
            assert relative_error(g, r) < TOLERANCE, (name, fmt, dims)


def test_bad_input_is_an_error_not_a_crash(tmp_path: Path) -> None:
    onnx.save(mlp(), str(tmp_path / "m.onnx"))
    art = compile_model(tmp_path / "m.onnx", tmp_path / "m.sparsec", CompileOptions(target="arm", format="csr"))
    with pytest.raises(SparsecError, match=r"aarch64 host under qemu failed \(exit 1\): error: .*"):
        run_on_arm(art.artifact, {"x": np.ones((2, 63), np.float32)})


def test_cli_compile_verifies_through_qemu(tmp_path: Path) -> None:
    """What a new user runs: the default compile verifies the aarch64 artifact under qemu and reports the error."""
    onnx.save(MODELS["ffn"](), str(tmp_path / "ffn.onnx"))
    cmd = [sys.executable, "-m", "sparsec.cli", "compile", str(tmp_path / "ffn.onnx"), "--target", "arm"]
    res = subprocess.run(cmd + ["--format", "csr"], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert "max rel error" in res.stdout and "NOT verified" not in res.stdout
    assert "arm artifact run on this host" in res.stderr
    assert (tmp_path / "ffn.sparsec" / "libsparsec_ep.so").is_file()


def test_comparison_sees_the_arm_kernels(tmp_path: Path) -> None:
    """Changing one packed weight in the artifact changes what the app computes: the outputs compared above really
    come from the aarch64 kernels, not from a dense fallback."""
    original = mlp()
    onnx.save(original, str(tmp_path / "m.onnx"))
    art = compile_model(tmp_path / "m.onnx", tmp_path / "m.sparsec", CompileOptions(target="arm", format="csr"))
    rewritten = onnx.load(str(art.artifact / "model.onnx"))
    values = next(t for t in rewritten.graph.initializer if t.name.endswith("__values"))
    arr = onnx.numpy_helper.to_array(values).copy()
    arr[:] += 1.0
    values.CopyFrom(onnx.numpy_helper.from_array(arr, values.name))
    onnx.save(rewritten, str(art.artifact / "model.onnx"))
    feeds = random_feeds(original, {"batch": 4}, seed=7)
    assert relative_error(run_on_arm(art.artifact, feeds)[0], reference_outputs(original, feeds)[0]) > 1e-2


def test_sparsec_run_on_an_arm_artifact(tmp_path: Path) -> None:
    """`sparsec run` on an ARM artifact runs it under qemu (this host is x86) and matches ORT on the original."""
    original = mlp()
    onnx.save(original, str(tmp_path / "m.onnx"))
    art = compile_model(tmp_path / "m.onnx", tmp_path / "m.sparsec", CompileOptions(target="arm", format="csr"))
    x = np.random.default_rng(11).standard_normal((5, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    cmd = [sys.executable, "-m", "sparsec.cli", "run", str(art.artifact), "--input", f"x={tmp_path / 'x.npy'}"]
    res = subprocess.run([*cmd, "-o", str(tmp_path / "out.npz")], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    got = np.load(tmp_path / "out.npz")["y"]
    assert relative_error(got, reference_outputs(original, {"x": x})[0]) < TOLERANCE
    bad = subprocess.run([*cmd, "--input", "z=nope.npy"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("cpu", ["cortex-a53", "neoverse-n1", "cortex-a78"])
def test_cpu_specific_kernels_match(cpu: str, tmp_path: Path) -> None:
    """--cpu: kernels tuned for one core (qemu emulates it when it can, else its "max" core) still match ORT."""
    original = for_format(mlp(), "bsr:4x4")
    onnx.save(original, str(tmp_path / "m.onnx"))
    opts = CompileOptions(target="arm", format="bsr:4x4", cpu=cpu)
    res = compile_model(tmp_path / "m.onnx", tmp_path / "m.sparsec", opts)  # verifies under qemu
    assert res.errors and max(res.errors.values()) < TOLERANCE and not res.unverified
    target = json.loads((res.artifact / "manifest.json").read_text())["target"]
    assert target["cpu"] == cpu and target["llvm_target"]["mcpu"] == cpu


def _conv_matches(original: onnx.ModelProto, fmt: str, tmp_path: Path) -> list[dict[str, object]]:
    onnx.save(original, str(tmp_path / "c.onnx"))
    opts = CompileOptions(target="arm", format=fmt)
    art = compile_model(tmp_path / "c.onnx", tmp_path / "c.sparsec", opts).artifact
    layers: list[dict[str, object]] = json.loads((art / "manifest.json").read_text())["layers"]
    for i, batch in enumerate((1, 3)):
        feeds = random_feeds(original, {"batch": batch}, seed=200 + i)
        for g, r in zip(run_on_arm(art, feeds), reference_outputs(original, feeds), strict=True):
            assert g.shape == r.shape and relative_error(g, r) < TOLERANCE, (fmt, batch)
    return layers


@pytest.mark.parametrize("fmt", ["csr", "bsr:4x1", "nm:2:4"])
def test_sparse_conv_geometries_on_arm(fmt: str, tmp_path: Path) -> None:
    """Every conv geometry of tests/conv_graphs.py on the NEON conv kernels (the shared templates) under qemu."""
    from sparsec.prune import parse_pattern, prune_model
    from tests.conv_graphs import GEOMETRIES, geometry_model

    m = geometry_model(0.5 if fmt.startswith("nm") else 0.3, seed=3)
    if fmt.startswith("nm"):
        m, _ = prune_model(m, parse_pattern(fmt))
    layers = _conv_matches(m, fmt, tmp_path)
    assert [(la["op"], la["format"]) for la in layers] == [("Conv", fmt)] * len(GEOMETRIES)


def test_sparse_conv_epilogues_on_arm(tmp_path: Path) -> None:
    from tests.conv_graphs import ACTS, epilogue_model

    layers = _conv_matches(epilogue_model(), "csr", tmp_path)
    assert [la["format"] for la in layers] == ["csr"] * len(ACTS)
    assert all(la["epilogue"][:2] == ["bias", "residual"] for la in layers)  # type: ignore[index]
