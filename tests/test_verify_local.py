"""Verification of models whose float sparse layers feed quantizers (QDQ): each sparse layer is checked on ORT's own
inputs (sparsec/verify_local.py), so a kernel 1% off is caught by name while one-step quantization flips elsewhere
are not mistaken for it; the end outputs are reported."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from models.synthetic import transformer_ffn
from sparsec.compiler import compile_model
from sparsec.errors import SparsecError
from sparsec.node import sparse_protos
from sparsec.options import CompileOptions
from sparsec.verify_local import SUFFIX, local_probe, quantizes_activations
from tests.test_verify_layers import break_layer


@pytest.fixture
def qdq(tmp_path: Path) -> Path:
    from sparsec.prune_cli import prune_file
    from sparsec.quantize import quantize_file

    src = tmp_path / "ffn.onnx"
    onnx.save(transformer_ffn(d=96, hidden=192, density=1.0), str(src))
    prune_file(src, "unstructured:0.9", tmp_path / "p.onnx")
    out = tmp_path / "q.onnx"
    quantize_file(tmp_path / "p.onnx", out, mode="qdq")
    return out


def test_qdq_model_checks_each_layer_on_orts_inputs(qdq: Path, tmp_path: Path) -> None:
    assert quantizes_activations(onnx.load(str(qdq)))
    res = compile_model(qdq, tmp_path / "q.sparsec", CompileOptions(format="csr"))
    assert [la["format"] for la in res.layers] == ["csr"] * 3 and res.checked == "3/3 sparse layers checked"
    rewritten = onnx.load(str(res.artifact / "model.onnx"))
    known = {o for n in onnx.load(str(qdq)).graph.node for o in n.output} | {"x"}
    probe, fed = local_probe(rewritten, known)
    for n in sparse_protos(probe):  # every non-constant input of every sparse node comes from the reference
        inits = {t.name for t in probe.graph.initializer}
        assert all(i.endswith(SUFFIX) or i in inits for i in n.input if i), n.input
    assert set(fed) <= {i.name for i in probe.graph.input} and all(fed[k] + SUFFIX == k for k in fed)


def test_broken_layer_of_a_qdq_model_is_caught_by_name(
    qdq: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_layer(monkeypatch, 1)
    with pytest.raises(SparsecError, match=r"sparse layer 'fc2' .*differs from ORT"):
        compile_model(qdq, tmp_path / "b.sparsec", CompileOptions(format="csr"))
    assert not (tmp_path / "b.sparsec").exists()


def test_float_and_exact_integer_models_keep_the_end_output_check() -> None:
    assert not quantizes_activations(transformer_ffn())


def test_qdq_cnn_left_all_dense_matches_ort_exactly(tmp_path: Path) -> None:
    # compile folds every dequantized weight and bias; the reference must fold the dense layers' biases too, or ORT
    # runs its convs on other kernels (NCHWc only with a constant bias) and the quantizers turn ulps into steps
    from models import cnn
    from sparsec.quantize import quantize_file

    src = tmp_path / "m.onnx"
    onnx.save(cnn.mobilenet_v2(resolution=32, classes=10), str(src))
    quantize_file(src, tmp_path / "q.onnx", mode="qdq")
    res = compile_model(tmp_path / "q.onnx", tmp_path / "q.sparsec", CompileOptions(format="dense"))
    assert all(la["format"] == "dense" for la in res.layers) and max(res.errors.values()) == 0.0


@pytest.mark.parametrize("foreign", ["", "ORT elsewhere"])
@pytest.mark.parametrize("fmt", ["csr", "dense"])
def test_another_orts_rounding_before_quantizers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, foreign: str, fmt: str
) -> None:
    """An artifact whose other ops run on another ORT build (ARM: ORT for aarch64) before a quantizer: an end output
    off by quantization steps is reported, and the sparse layers are checked on ORT's inputs, where the ORT build
    does not matter; against the same ORT (x86) such a difference stays a failure. Simulated on x86: the end outputs
    of the artifact (not of the per-layer probe) come back 1% off."""
    import numpy as np

    from sparsec.targets.x86.target import X86Target
    from tests.test_integer_layers import _save, integer_model

    run = X86Target.run_artifact

    def off(self: X86Target, artifact: Path, feeds: dict[str, np.ndarray]) -> list[object]:
        outs = run(self, artifact, feeds)
        return outs if "sparsec-probe-" in str(artifact) else [o * np.float32(1.01) for o in outs]

    monkeypatch.setattr(X86Target, "run_artifact", off)
    monkeypatch.setattr(X86Target, "foreign_ort", foreign)
    src = _save(tmp_path, integer_model(np.int8, density=0.3))
    messages: list[str] = []
    options = CompileOptions(format=fmt)
    if not foreign:
        with pytest.raises(SparsecError, match=r"^verification failed: output 'y' differs from ORT"):
            compile_model(src, tmp_path / "i.sparsec", options, progress=messages.append)
        return
    res = compile_model(src, tmp_path / "i.sparsec", options, progress=messages.append)
    assert 0.009 < res.errors["y"] < 0.011
    assert any("ORT elsewhere rounds the model's other float ops its own way" in m for m in messages)
    if fmt == "csr":
        assert res.checked == "1/1 sparse layers checked"
    else:
        assert any(m.endswith("no layer is sparse") for m in messages)
