"""``--tune``: candidates, cache keys and reuse, forced formats, and tuned artifacts matching ORT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from models.synthetic import transformer_ffn
from sparsec.cli import main
from sparsec.layer import Layer
from sparsec.passes import tune
from sparsec.passes.analysis import find_layers
from sparsec.passes.cost_model import EP_NODE_US, absorbed_us
from sparsec.targets.registry import get_target
from sparsec.verify import compare_artifact, random_feeds


def _layer(density: float = 0.1) -> Layer:
    import onnx_ir as ir

    (layer, *_) = find_layers(ir.from_proto(transformer_ffn(d=32, hidden=48, density=density)).graph)
    return layer


def test_pattern_hash_depends_on_mask_only() -> None:
    w = np.zeros((4, 8), np.float32)
    w[1, 2] = 1.0
    v = w.copy()
    v[1, 2] = -7.0
    assert tune.pattern_hash(w) == tune.pattern_hash(v)
    v[0, 0] = 1.0
    assert tune.pattern_hash(w) != tune.pattern_hash(v)
    assert tune.pattern_hash(w) != tune.pattern_hash(w.reshape(8, 4))


def test_candidates_are_fitting_top_formats_with_every_variant() -> None:
    layer = _layer()
    target = get_target("x86")
    presets = ["csr", "bsr:4x4", "bsr:16x1", "nm:2:4", "bsr:1x4", "bsr:8x1"]
    order = {f: i for i, f in enumerate(presets)}
    entries = tune.candidates(layer, presets, lambda f: -order[f], target.variants)  # type: ignore[arg-type]
    formats = list(dict.fromkeys(e.split("|")[0] for e in entries))
    assert "nm:2:4" not in formats  # an unstructured 10% weight does not conform to 2:4
    assert formats == [f for f in presets if f != "nm:2:4"][: tune.TOP]
    for fmt in formats:
        assert [e.split("|")[1] for e in entries if e.startswith(fmt + "|")] == target.variants(fmt)


def test_second_tune_is_served_from_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPARSEC_CACHE_DIR", str(tmp_path))
    layer = _layer()
    target = get_target("x86")
    calls: list[int] = []

    def fake_measure(
        layer: object, entries: list[str], rows: int, target: object, threads: int, floated: bool
    ) -> dict[str, float]:
        calls.append(rows)
        return {"dense": 10.0, **{e: 20.0 - i for i, e in enumerate(entries)}}

    monkeypatch.setattr(tune, "_measure", fake_measure)
    args = (layer, 16, ["csr", "bsr:4x4"], lambda f: 1.0, target, {"sparsec": "x"})
    first = tune.tune_layer(*args)  # type: ignore[arg-type]
    second = tune.tune_layer(*args)  # type: ignore[arg-type]
    assert calls == [16] and not first[3] and second[3]
    assert first[:3] == second[:3]
    assert first[0].format == "dense" and "measured" in first[0].reason  # every kernel slower than dense
    tune.tune_layer(layer, 16, ["csr", "bsr:4x4"], lambda f: 1.0, target, {"sparsec": "y"})  # type: ignore[arg-type]
    assert calls == [16, 16]  # another toolchain version is another key
    monkeypatch.setattr(tune, "TIMING", tune.TIMING + 1)
    tune.tune_layer(*args)  # type: ignore[arg-type]
    assert calls == [16, 16, 16]  # entries timed another way are not reused
    monkeypatch.setattr(type(target), "llvm_target", lambda self: {"kind": "llvm", "mcpu": "other"})
    tune.tune_layer(*args)  # type: ignore[arg-type]
    assert calls == [16, 16, 16, 16]  # nor entries of kernels generated with other LLVM options


def test_dense_reference_spins_like_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """ORT's dense layer is timed with its workers spinning (ORT's default, as in a model): with blocking workers
    it ran up to 2x slow in interleaved timing on a VM, and sparse kernels looked that much faster."""
    import onnxruntime as ort

    from sparsec.passes import calibrate_measure

    seen: list[ort.SessionOptions] = []
    real = ort.InferenceSession

    def spy(model: bytes, so: ort.SessionOptions, providers: list[str]) -> ort.InferenceSession:
        seen.append(so)
        return real(model, so, providers=providers)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    run = calibrate_measure.dense_runner(8, 4, 2, 2)
    run()
    (so,) = seen
    assert so.intra_op_num_threads == 2
    with pytest.raises(RuntimeError, match="does not have configuration"):
        so.get_session_config_entry("session.intra_op.allow_spinning")


def test_fastest_entry_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPARSEC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(
        tune,
        "_measure",
        lambda la, entries, rows, t, th, fl: {"dense": 10.0, **{e: 5.0 for e in entries}, "csr|xt": 2.0},
    )
    layer = _layer()
    assert layer.absorbed == ("BiasGelu",)  # ORT runs its bias and GELU as one node: the dense side pays for it
    choice, variant, times, _ = tune.tune_layer(layer, 1, ["csr"], lambda f: 1.0, get_target("x86"), {})  # type: ignore[arg-type]
    # the kernel timed alone gets the sparse node's own cost (EP_NODE_US) on top, ORT's MatMul its BiasGelu
    dense_us = 10.0 + absorbed_us(1, layer.n, layer.absorbed)
    assert (choice.format, variant) == ("csr", "xt") and choice.speedup == pytest.approx(dense_us / (2.0 + EP_NODE_US))


def test_conv_layout_conversions_move_from_dense_to_sparse(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """ORT's Conv timed alone includes its own NCHWc conversions, which its NCHWc neighbours spare it in the model;
    the sparse kernel makes ORT pay them there. 100 us dense alone, 70 us kernel, 20 us of conversions: 80 vs 90."""
    from sparsec.passes.cost_model import REORDER_NS
    from tests.conv_graphs import geometry_model

    monkeypatch.setenv("SPARSEC_CACHE_DIR", str(tmp_path))
    import dataclasses

    import onnx_ir as ir

    (layer, *_) = find_layers(ir.from_proto(geometry_model(0.2)).graph)
    assert layer.op == "Conv"
    layer = dataclasses.replace(layer, reorder=round(20_000 / REORDER_NS))  # 20 us
    times = lambda la, entries, rows, t, th, fl: {"dense": 100.0, **{e: 70.0 for e in entries}}  # noqa: E731
    monkeypatch.setattr(tune, "_measure", times)
    choice, *_ = tune.tune_layer(layer, 64, ["csr"], lambda f: 1.0, get_target("x86"), {})  # type: ignore[arg-type]
    assert choice.format == "dense" and choice.speedup == pytest.approx(80 / (90 + EP_NODE_US), rel=1e-3), choice
    layer = dataclasses.replace(layer, reorder=0)  # no NCHWc neighbour: ORT pays its conversions either way
    choice, *_ = tune.tune_layer(layer, 64, ["csr"], lambda f: 1.0, get_target("x86"), {})  # type: ignore[arg-type]
    assert choice.format == "csr" and choice.speedup == pytest.approx(100 / (70 + EP_NODE_US), rel=1e-3), choice


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    d = tmp_path_factory.mktemp("tuned")
    model = d / "ffn.onnx"
    onnx.save(transformer_ffn(d=64, hidden=128, out=16, density=0.1, seed=3), str(model))
    r = CliRunner().invoke(main, ["compile", str(model), "--tune", "--format", "csr", "--dim", "batch=2"])
    assert r.exit_code == 0, r.stderr
    return model, r.stderr.splitlines()


def test_tuned_artifact_records_and_matches_ort(tuned: tuple[Path, list[str]]) -> None:
    model, log = tuned
    bars = [ln for ln in log if "tuning [" in ln]
    assert len(bars) == 3 and "] 3/3 head: csr" in bars[-1]
    manifest = json.loads(model.with_suffix(".sparsec").joinpath("manifest.json").read_text())
    for la in manifest["layers"]:
        assert la["format"] == "csr"  # forced: tuning picks the variant
        assert la["variant"] in get_target("x86").variants("csr") and "dense" in la["tuning"]["measured_us"]
        assert (
            la["variant"]
            == min((e for e in la["tuning"]["measured_us"] if e != "dense"), key=la["tuning"]["measured_us"].get).split(
                "|"
            )[1]
        )
    original = onnx.load(str(model))
    feeds = random_feeds(original, {"batch": 3, "seq": 5}, seed=42)
    errors = compare_artifact(original, model.with_suffix(".sparsec"), feeds)
    assert max(errors.values()) < 1e-4


def test_retune_measures_nothing(tuned: tuple[Path, list[str]]) -> None:
    model, _ = tuned
    r = CliRunner().invoke(
        main, ["compile", str(model), "--tune", "--format", "csr", "-o", str(model.with_suffix(".b"))]
    )
    assert r.exit_code == 0, r.stderr
    bars = [ln for ln in r.stderr.splitlines() if "tuning [" in ln]
    assert len(bars) == 3 and all(ln.endswith("(cached)") for ln in bars)
    assert "found in the cache" in r.stderr


def test_tuned_cnn_measures_convs_and_matches_ort(tmp_path: Path) -> None:
    from tests.conv_graphs import geometry_model

    model = geometry_model(density=0.2)
    src = tmp_path / "cnn.onnx"
    onnx.save(model, str(src))
    r = CliRunner().invoke(main, ["compile", str(src), "--tune", "--dim", "batch=2"])
    assert r.exit_code == 0, r.stderr
    manifest = json.loads((tmp_path / "cnn.sparsec" / "manifest.json").read_text())
    convs = [la for la in manifest["layers"] if la["op"] == "Conv" and "tuning" in la]
    assert convs, manifest["layers"]
    for la in convs:
        times = la["tuning"]["measured_us"]
        assert "dense" in times and all(e.endswith("|conv") for e in times if e != "dense")
        assert "measured" in la["reason"]
    feeds = random_feeds(model, {"batch": 3}, seed=9)
    errors = compare_artifact(model, tmp_path / "cnn.sparsec", feeds)
    assert max(errors.values()) < 1e-4
