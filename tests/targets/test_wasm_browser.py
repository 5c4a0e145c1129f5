"""The wasm artifact in a browser: served as static files on localhost, run in headless Chromium (Debian's) through
``sparsec.mjs``, outputs posted back and compared with ORT (Python) on the original model."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsec.errors import SparsecError
from sparsec.targets.wasm.browser import run_in_browser
from sparsec.verify import TOLERANCE, random_feeds, reference_outputs, relative_error
from tests.targets.wasm_helpers import MODELS, compile_wasm, for_format, needs_chromium, needs_wasm

pytestmark = [needs_wasm, needs_chromium]


def test_ffn_in_chromium_matches_ort(tmp_path: Path) -> None:
    """Transformer FFN (GELU, residual, dense Reshape on onnxruntime-web, Gemm head), bsr 16x1, batch x seq 2 x 5."""
    original = for_format(MODELS["ffn"](), "bsr:16x1")
    art = compile_wasm(original, tmp_path, "bsr:16x1")  # verified in node too
    feeds = random_feeds(original, {"batch": 2, "seq": 5}, seed=31)
    got = run_in_browser(art, feeds)
    ref = reference_outputs(original, feeds)
    assert list(got) == ["y", "z"]
    for g, r in zip(got.values(), ref, strict=True):
        assert g.shape == r.shape and relative_error(g, r) < TOLERANCE


def test_error_in_the_page_is_reported(tmp_path: Path) -> None:
    original = for_format(MODELS["mlp"](), "nm:2:4")
    art = compile_wasm(original, tmp_path, "nm:2:4", verify=False)
    with pytest.raises(SparsecError, match=r"failed in chromium: sparsec: missing input 'x'"):
        run_in_browser(art, {})


def test_zipmap_output_in_chromium(tmp_path: Path) -> None:
    """A classifier ending in ZipMap (skl2onnx style): the page returns the sequence of maps, as ORT does."""
    import onnx

    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions
    from tests.test_ml_outputs import classifier

    model, src = classifier(), tmp_path / "clf.onnx"
    onnx.save(model, str(src))
    art = compile_model(
        src, tmp_path / "clf.sparsec", CompileOptions(target="wasm", format="csr", verify=False)
    ).artifact
    feeds = random_feeds(model, {"N": 3}, seed=2)
    got = run_in_browser(art, feeds)
    ref = reference_outputs(src, feeds)
    assert list(got) == ["label", "output_probability"] and len(got["output_probability"]) == 3
    assert relative_error(got["output_probability"], ref[1]) < TOLERANCE and (got["label"] == ref[0]).all()
