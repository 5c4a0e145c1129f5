"""Property-based: random small graphs (shapes, sparsity patterns, epilogues, forced formats) compile and match
ORT on the original model on fresh random inputs. ``SPARSEC_FUZZ_EXAMPLES`` sets how many (CI: a handful)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
from hypothesis import HealthCheck, given, settings

from sparsec.compiler import compile_model
from sparsec.options import CompileOptions
from sparsec.verify import TOLERANCE, compare_artifact, random_feeds
from tests.fuzz.graphs import build_graph, graph_specs

EXAMPLES = int(os.environ.get("SPARSEC_FUZZ_EXAMPLES", "12"))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(spec=graph_specs())
def test_random_graph_matches_ort(spec: dict[str, object]) -> None:
    model = build_graph(spec)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "m.onnx"
        onnx.save(model, str(src))
        result = compile_model(src, Path(tmp) / "m.sparsec", CompileOptions(format=str(spec["format"]), verify=False))
        assert len(result.layers) == len(spec["layers"])  # type: ignore[arg-type]
        for batch, seq in ((1, 1), (3, 5)):
            feeds = random_feeds(model, {"batch": batch, "seq": seq}, seed=batch * 7 + seq)
            errors = compare_artifact(model, result.artifact, feeds)
            assert max(errors.values()) <= TOLERANCE, (errors, spec)
