"""cost model: the calibrated x86 table is complete and sane; lookups, buckets and the calibration fit (no timing)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from sparsec.errors import SparsecError
from sparsec.passes.calibrate_fit import BUCKETS, fit_bucket, fit_table, nnls, write
from sparsec.passes.cost_model import DATA_DIR, CostModel, cost_model
from sparsec.targets.simd.table import supported_presets
from sparsec.targets.x86.target import VARIANTS

DATA = json.loads((DATA_DIR / "x86.json").read_text())
ISAS = sorted(DATA["isa"])
VW = {"avx512": 16, "avx2": 8, "sse": 4}
SHAPES = ((384, 384), (768, 768), (768, 3072), (3072, 768))


def test_table_loads_with_every_bucket() -> None:
    assert DATA["source"] and ISAS
    for isa in ISAS:
        model = cost_model("x86", isa)
        assert model.isa == isa and model.source
        assert "dense" in model.table
        for key, buckets in model.table.items():
            # tables calibrated before the 1024 bucket (other machines' ISAs) have the first three
            assert sorted(int(m) for m in buckets) in (list(BUCKETS), list(BUCKETS[:3])), (isa, key)
            for consts in buckets.values():
                assert len(consts) == 3 and all(math.isfinite(v) and v >= 0 for v in consts), (isa, key, consts)


@pytest.mark.parametrize("isa", ISAS)
def test_every_supported_preset_is_known(isa: str) -> None:
    """Every preset with an x86 kernel at this ISA's vector width has its own key or its family's."""
    model = cost_model("x86", isa)
    for preset in supported_presets(VW[isa], VARIANTS):
        assert model.knows(preset), (isa, preset)
    assert model.knows("dense")


def test_measured_tables_fit_every_key() -> None:
    """A calibrated ISA records the fit error of each key, and has its own key for each preset it measured."""
    for isa, fit in DATA.get("fit", {}).items():
        table = DATA["isa"][isa]
        assert set(fit) == set(table), isa
        for key, errors in fit.items():
            measured = {str(m) for m in BUCKETS if str(m) in table[key]}
            assert len(measured) >= 3 and set(errors) == measured | {"all", "max"}, (isa, key)
            assert all(0 <= e <= errors["max"] for e in errors.values()), (isa, key, errors)
        assert set(supported_presets(VW[isa], VARIANTS)) <= set(table), isa


@pytest.mark.parametrize("isa", ISAS)
def test_predictions_positive_and_increase_with_stored(isa: str) -> None:
    model = cost_model("x86", isa)
    for key in model.table:
        for (k, n), m in ((s, m) for s in SHAPES for m in (1, 4, 16, 50, 128, 512)):
            if key == "dense":
                small = model.predict_us(key, k, n, k * n, m)
                assert 0 < small < model.predict_us(key, 2 * k, n, 2 * k * n, m), (key, k, n, m)
                continue
            times = [model.predict_us(key, k, n, int(d * k * n), m) for d in (0.05, 0.1, 0.4, 1.0)]
            assert times[0] > 0, (key, k, n, m)
            assert all(a < b for a, b in zip(times, times[1:], strict=False)), (key, k, n, m, times)


def test_nearest_bucket_in_log_scale() -> None:
    """Each bucket predicts its own m (c = m, no per-value cost): the bucket chosen for M is the nearest in log."""
    table = {"dense": {str(b): [0.0, 0.0, float(b)] for b in BUCKETS}}
    model = CostModel("x86", "test", table, "test")
    expect = {0: 1, 1: 1, 3: 1, 5: 16, 16: 16, 40: 16, 50: 128, 128: 128, 300: 128, 400: 1024, 10_000: 1024}
    for m, bucket in expect.items():
        assert model.predict_us("dense", 8, 8, 64, m) == bucket, m


def test_preset_key_takes_precedence_over_family() -> None:
    table = {
        "dense": {"16": [1.0, 0.0, 0.0]},
        "bsr": {"16": [2.0, 0.0, 0.0]},
        "bsr:16x1": {"16": [0.5, 0.0, 0.0]},
    }
    model = CostModel("x86", "test", table, "test")
    assert model.predict_us("bsr:16x1", 64, 64, 1000, 16) == pytest.approx(16 * 0.5 * 1000 / 1000)
    assert model.predict_us("bsr:4x4", 64, 64, 1000, 16) == pytest.approx(16 * 2.0 * 1000 / 1000)
    assert model.knows("bsr:8x1") and not model.knows("csr") and not model.knows("nm:2:4")
    with pytest.raises(KeyError):
        model.predict_us("csr", 64, 64, 1000, 16)


def test_unknown_isa_and_target() -> None:
    assert cost_model("x86", "no-such-isa").isa in ISAS
    with pytest.raises(SparsecError, match="tune-cost-model"):
        cost_model("no-such-target", "avx2")


def test_nnls_is_exact_and_non_negative() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((20, 3))
    assert np.allclose(nnls(a, a @ np.array([1.0, 2.0, 0.5])), [1.0, 2.0, 0.5])
    x = nnls(a, a @ np.array([1.0, -2.0, 0.5]))  # the unconstrained optimum is infeasible
    assert (x >= 0).all() and x[1] == 0


def test_fit_recovers_known_constants() -> None:
    """Rows generated from t = M (a stored + b N) / 1000 + c give back a, b, c with zero error, per bucket."""
    consts = {1: (0.2, 5.0, 1.0), 16: (0.03, 1.0, 3.0), 128: (0.01, 0.5, 0.0), 1024: (0.008, 0.4, 2.0)}
    rows = []
    for (k, n), d, m in ((s, d, m) for s in SHAPES for d in (0.05, 0.1, 0.4) for m in BUCKETS):
        a, b, c = consts[m]
        stored = int(d * k * n)
        rows.append(
            {"fmt": "bsr:4x4", "k": k, "n": n, "m": m, "stored": stored, "us": m * (a * stored + b * n) / 1e3 + c}
        )
    coef, errors = fit_bucket([r for r in rows if r["m"] == 16], 16)
    assert coef == pytest.approx(consts[16], rel=1e-3, abs=1e-6) and max(errors) < 1e-6
    table, fit = fit_table(rows)
    assert set(table) == {"bsr:4x4", "bsr"} and table["bsr"] == table["bsr:4x4"]
    assert all(v < 1e-6 for v in fit["bsr"].values())


def test_write_keeps_other_isas(tmp_path: Path) -> None:
    out = tmp_path / "x86.json"
    out.write_text(json.dumps({"source": "old guess", "isa": {"avx2": {"dense": {"1": [1.0, 0.0, 0.0]}}}}))
    data = {"source": "new run", "table": {"dense": {"1": [2.0, 0.0, 0.0]}}, "fit": {"dense": {}}, "variants": {}}
    write(out, "avx512", data)
    written = json.loads(out.read_text())
    assert set(written["isa"]) == {"avx2", "avx512"} and written["source"] == "new run"
    assert written["sources"] == {"avx2": "old guess", "avx512": "new run"}
    assert written["isa"]["avx2"]["dense"]["1"] == [1.0, 0.0, 0.0]
