"""The mutation fuzzer in CI: a few hundred seeded cases (``SPARSEC_FUZZ_CASES``), zero crashes, hangs or bugs.

The dedicated run is ``make fuzz`` (1,000 cases); see tests/fuzz/harness.py.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.fuzz.harness import build_fixtures, run


def test_mutation_fuzz_no_crash_hang_or_bug(tmp_path: Path) -> None:
    fixtures = tmp_path / "fixtures"
    fixtures.mkdir()
    build_fixtures(fixtures)
    cases = int(os.environ.get("SPARSEC_FUZZ_CASES", "200"))
    report = run(
        cases,
        seed=int(os.environ.get("SPARSEC_FUZZ_SEED", "2026")),
        timeout=60.0,
        fixtures=fixtures,
        log=tmp_path / "worker.log",
        say=False,
    )
    assert sum(report.counts.values()) == cases
    assert set(report.kinds) == {"model", "artifact-raw", "artifact-resealed", "inputs"}
    assert report.counts["error"] > 0  # the mutations do reach the checks (a fuzzer that only passes is broken)
    assert report.bad == 0, "\n".join(report.failures[:10])


def test_fuzzer_detects_a_crash(tmp_path: Path) -> None:
    """The harness itself: a worker that dies is a crash, one that stalls is a hang (so a pass means something)."""
    from tests.fuzz import harness

    class Dying(harness.Worker):
        def __init__(self, fixtures: Path, log: Path) -> None:
            import subprocess
            import sys

            self.log = open(log, "ab")  # noqa: SIM115
            code = "import sys, os\nfor line in sys.stdin:\n    os.abort() if 'artifact' in line else input()"
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True
            )

    original = harness.Worker
    harness.Worker = Dying  # type: ignore[misc]
    try:
        report = run(6, seed=1, timeout=2.0, fixtures=tmp_path, log=tmp_path / "w.log", say=False)
    finally:
        harness.Worker = original  # type: ignore[misc]
    assert report.counts["crash"] + report.counts["hang"] == 6
    assert report.counts["crash"] > 0 and report.counts["hang"] > 0
