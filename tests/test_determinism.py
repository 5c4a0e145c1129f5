"""Compiling the same model with the same options twice gives byte-identical artifacts (issue 8: cacheable,
auditable): no timestamps, temporary paths or unordered maps leak into any file. And a refactor of the compiler
changes no byte it writes (issue 13): ``golden_artifacts.json`` holds the sha256 of model.onnx and of the manifest's
layer records for fixed models and options, as sparsec wrote them before the pipeline moved to onnx-ir.
Regenerate it only for an intended change of the output: ``python -m tests.test_determinism --update``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

from models.synthetic import transformer_ffn
from sparsec.compiler import compile_model
from sparsec.options import CompileOptions

GOLDEN = Path(__file__).with_name("golden_artifacts.json")
# Layer fields that do not depend on the host (the reasons quote the cost model of the host's ISA).
LAYER_KEYS = ("name", "op", "shape", "format", "density", "kernel", "epilogue", "region")


@pytest.mark.parametrize("fmt", ["auto", "bsr:4x4"])
def test_two_compiles_are_byte_identical(tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARSEC_CACHE", "off")  # both compiles really build their kernel library
    src = tmp_path / "ffn.onnx"
    # 128 -> 512 -> 128: layers large enough that auto makes them sparse (the 48 -> 96 default's stay dense since the
    # cost model's dense reference is timed as ORT runs in a model, with its workers spinning)
    onnx.save(transformer_ffn(d=128, hidden=512, density=0.15, seed=4), str(src))
    opts = CompileOptions(format=fmt, verify=False)
    a = compile_model(src, tmp_path / "a.sparsec", opts).artifact
    b = compile_model(src, tmp_path / "sub" / "b.sparsec", opts).artifact  # another output path, too
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert {"manifest.json", "model.onnx", "kernels.so"} <= set(names)
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs between two compiles"
    manifest = json.loads((a / "manifest.json").read_text())
    assert str(tmp_path) not in json.dumps(manifest)  # no absolute paths of the machine that compiled it


def _pruned(name: str) -> Callable[[], onnx.ModelProto]:
    def make() -> onnx.ModelProto:
        from models import cnn
        from sparsec.prune import parse_pattern, prune_model

        dense = {"mobilenet_v2": cnn.mobilenet_v2, "resnet": cnn.resnet}[name](resolution=64, classes=10)
        return prune_model(dense, parse_pattern("unstructured:0.8"))[0]

    return make


# case -> (model, --format): fusion of every epilogue kind (bias, residual, relu, clip, gelu), convs, Gemm.
CASES: dict[str, tuple[Callable[[], onnx.ModelProto], str]] = {
    "ffn-csr": (lambda: transformer_ffn(density=0.15, seed=4), "csr"),
    "ffn-bsr4x4": (lambda: transformer_ffn(density=0.15, seed=4), "bsr:4x4"),
    "mobilenet_v2-csr": (_pruned("mobilenet_v2"), "csr"),
    "resnet-csr": (_pruned("resnet"), "csr"),
}


def digests(case: str, tmp: Path) -> dict[str, str]:
    """sha256 of the artifact's model.onnx and of its layer records (host-independent fields)."""
    make, fmt = CASES[case]
    src = tmp / f"{case}.onnx"
    onnx.save(make(), str(src))
    art = compile_model(src, tmp / f"{case}.sparsec", CompileOptions(format=fmt, verify=False)).artifact
    layers = json.loads((art / "manifest.json").read_text())["layers"]
    kept = [{k: la[k] for k in LAYER_KEYS if k in la} for la in layers]
    return {
        "model.onnx": hashlib.sha256((art / "model.onnx").read_bytes()).hexdigest(),
        "layers": hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest(),
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_artifact_bytes_are_the_recorded_ones(case: str, tmp_path: Path) -> None:
    expected = json.loads(GOLDEN.read_text())[case]
    assert digests(case, tmp_path) == expected, f"{case}: the compiler's output changed"


if __name__ == "__main__" and "--update" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_text(json.dumps({c: digests(c, Path(tmp)) for c in sorted(CASES)}, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
