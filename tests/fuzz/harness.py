"""The mutation fuzzer (issue 8): seeded cases over model bytes, artifact bytes, re-sealed artifacts and inputs.

    python -m tests.fuzz.harness --cases 1000 [--seed 0] [--timeout 60]

prints one line per failure and a summary; exit status 1 when any case crashed, hung or hit a bug. Every case is
reproducible from (kind, seed). ``make fuzz`` runs the dedicated 1,000-case run; the test suite runs a few hundred.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .cases import pick_kind

REPO = Path(__file__).resolve().parents[2]


def build_fixtures(root: Path) -> None:
    """A small transformer FFN (2:4 pruned for the nm artifact) compiled as csr, bsr:4x4 and nm:2:4."""
    import onnx

    from models.synthetic import transformer_ffn
    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions
    from sparsec.prune import parse_pattern, prune_model

    model = transformer_ffn(d=16, hidden=24, out=8, density=0.3, seed=11)
    onnx.save(model, str(root / "seed.onnx"))
    nm, _ = prune_model(transformer_ffn(d=16, hidden=24, out=8, density=1.0, seed=12), parse_pattern("nm:2:4"))
    onnx.save(nm, str(root / "nm.onnx"))
    for name, src, fmt in (("csr", "seed", "csr"), ("bsr", "seed", "bsr:4x4"), ("nm", "nm", "nm:2:4")):
        compile_model(root / f"{src}.onnx", root / f"{name}.sparsec", CompileOptions(format=fmt))


@dataclass
class Report:
    counts: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def bad(self) -> int:
        return self.counts["crash"] + self.counts["hang"] + self.counts["bug"]

    def summary(self) -> str:
        total = sum(self.counts.values())
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.kinds.items()))
        return f"{total} cases ({kinds}): {parts}; crashes+hangs+bugs: {self.bad}"


class Worker:
    def __init__(self, fixtures: Path, log: Path) -> None:
        env = {**os.environ, "TVM_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        self.log = open(log, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fuzz.worker", str(fixtures)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=REPO,
            env=env,
            text=True,
        )

    def ask(self, case: dict[str, object], timeout: float) -> dict[str, str]:
        assert self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(json.dumps(case) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"outcome": "crash", "detail": f"worker gone (exit {self.proc.wait()})"}
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return {"outcome": "hang", "detail": f"no answer in {timeout:.0f} s"}
        line = self.proc.stdout.readline()
        if not line:
            return {"outcome": "crash", "detail": f"worker died (exit {self.proc.wait()})"}
        return json.loads(line)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def run(cases: int, seed: int, timeout: float, fixtures: Path, log: Path, say: bool = True) -> Report:
    rng = random.Random(seed)
    report = Report()
    worker = Worker(fixtures, log)
    try:
        for i in range(cases):
            case = {"kind": pick_kind(rng), "seed": rng.randrange(2**32)}
            answer = worker.ask(case, timeout)
            report.counts[answer["outcome"]] += 1
            report.kinds[str(case["kind"])] += 1
            if answer["outcome"] in ("crash", "hang", "bug"):
                line = f"case {i} {case}: {answer['outcome']}: {answer['detail']}"
                report.failures.append(line)
                if say:
                    print(line, flush=True)
                if answer["outcome"] != "bug":  # the worker is dead or stuck: start a fresh one
                    worker.stop()
                    worker = Worker(fixtures, log)
            if say and (i + 1) % 100 == 0:
                print(f"[fuzz] {i + 1}/{cases}: {report.summary()}", flush=True)
    finally:
        worker.stop()
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case before it counts as a hang")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sparsec-fuzz-") as tmp:
        root = Path(tmp)
        fixtures = root / "fixtures"
        fixtures.mkdir()
        build_fixtures(fixtures)
        report = run(args.cases, args.seed, args.timeout, fixtures, root / "worker.log")
    print(report.summary())
    sys.exit(1 if report.bad else 0)


if __name__ == "__main__":
    main()
