"""sparsec prune: exact magnitude pruning per pattern, in the W[N, K] orientation, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from models.synthetic import transformer_ffn
from sparsec.errors import SparsecError
from sparsec.prune import parse_pattern, prune_model, prune_weight
from sparsec.prune_cli import prune_file

W = np.random.default_rng(0).standard_normal((37, 53)).astype(np.float32)


@pytest.mark.parametrize("bad", ["random:0.5", "unstructured:1.0", "block:0x4:0.9", "nm:4:2", "nm:2", ""])
def test_bad_patterns(bad: str) -> None:
    with pytest.raises(SparsecError, match="pattern"):
        parse_pattern(bad)


def test_unstructured_exact_and_largest() -> None:
    out = prune_weight(W, parse_pattern("unstructured:0.9"))
    kept = np.count_nonzero(out)
    assert kept == round(0.1 * W.size)
    assert np.abs(W[out == 0]).max() <= np.abs(out[out != 0]).min()


def test_block_pattern() -> None:
    out = prune_weight(W, parse_pattern("block:4x4:0.75"))
    pad = np.zeros((40, 56), np.float32)
    pad[:37, :53] = out
    blocks = np.abs(pad.reshape(10, 4, 14, 4)).sum(axis=(1, 3)) > 0
    assert blocks.sum() == round(0.25 * blocks.size)
    kept = np.kron(blocks, np.ones((4, 4), bool))[:37, :53]
    np.testing.assert_array_equal(out[kept], W[kept])


def test_nm_groups_along_k() -> None:
    out = prune_weight(W, parse_pattern("nm:2:4"))
    pad = np.zeros((37, 56), np.float32)
    pad[:, :53] = out
    assert (np.count_nonzero(pad.reshape(37, 14, 4), axis=2) <= 2).all()
    g = np.abs(W[:, :4])
    np.testing.assert_array_equal(out[:, :4] != 0, g >= np.sort(g, axis=1)[:, [2]])


def test_model_orientation_and_ort_runs(tmp_path: Path) -> None:
    m = transformer_ffn(density=1.0)
    pruned, stats = prune_model(m, parse_pattern("nm:2:4"))
    assert [s["name"] for s in stats] == ["w1", "w2", "w3"]
    inits = {t.name: numpy_helper.to_array(t) for t in pruned.graph.initializer}
    w1 = inits["w1"].T  # MatMul: W = B.T, groups run along B's rows
    w3 = inits["w3"]  # Gemm transB=1: W = B
    for w in (w1, w3):
        assert (np.count_nonzero(w.reshape(w.shape[0], -1, 4), axis=2) <= 2).all()
    import onnxruntime as ort

    x = np.ones((2, 3, 48), np.float32)
    ort.InferenceSession(pruned.SerializeToString()).run(None, {"x": x})


def test_prune_file_errors_and_output(tmp_path: Path) -> None:
    src = tmp_path / "m.onnx"
    onnx.save(transformer_ffn(density=1.0), str(src))
    with pytest.raises(SparsecError, match="does not exist"):
        prune_file(src, "unstructured:0.5", tmp_path / "nope" / "o.onnx")
    msg = prune_file(src, "unstructured:0.5", tmp_path / "o.onnx")
    assert "pruned 3 weights" in msg and (tmp_path / "o.onnx").is_file()
    assert list(tmp_path.glob(".prune-*")) == []
