"""Sparse convolutions end to end: compile, run through ORT + the sparsec EP, compare with ORT on the original.

Every geometry of tests/conv_graphs.py (1x1, strided 1x1, 3x3 same/valid/strided, dilated with asymmetric pads,
5x5) with every format family, on odd channel counts, at batch 1 and 4.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conv_graphs import GEOMETRIES, geometry_model
from tests.passes.graphs import compile_and_compare

FORMATS = ("csr", "bsr:4x1", "bsr:1x4", "nm:2:4")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_geometry(fmt: str, tmp_path: Path) -> None:
    m = geometry_model(0.5 if fmt.startswith("nm") else 0.3, seed=len(fmt))
    if fmt.startswith("nm"):
        from sparsec.prune import parse_pattern, prune_model

        m, _ = prune_model(m, parse_pattern("nm:2:4"))
    rewritten, err = compile_and_compare(m, tmp_path, fmt=fmt, batches=(1, 4))
    assert err < 1e-4
    assert [n.op_type for n in rewritten.graph.node] == ["EPContext"] * len(GEOMETRIES)
    manifest = json.loads((tmp_path / "m.sparsec" / "manifest.json").read_text())
    assert {la["op"] for la in manifest["layers"]} == {"Conv"}
    assert [la["format"] for la in manifest["layers"]] == [fmt] * len(GEOMETRIES)
