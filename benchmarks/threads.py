"""Thread-pool study: does TVM's kernel pool fight ORT's intra-op pool?

For each TVM environment setting (read once per process, so each runs in a child process), time ORT dense, sparsec
with ORT intra-op spinning on (ORT's default) and sparsec with spinning off, interleaved, on the same inputs.
TVM's workers spin ``TVM_THREAD_POOL_SPIN_COUNT`` times (default 300000 yields, measured here: 60-300 ms) after a
kernel before sleeping; ORT's ops that run in that window share the cores with them.
``python -m benchmarks.threads --child CASES.json`` is the child; ``study()`` the parent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import ROOT, dense_session, interleaved, runner, sparsec_session

# (TVM_NUM_THREADS, TVM_THREAD_POOL_SPIN_COUNT); None = unset
SETTINGS: tuple[tuple[str | None, str | None], ...] = (
    (None, None),
    ("1", None),
    ("2", None),
    ("2", "0"),
    ("2", "1000"),
)
LONG_GAP_S = 0.35  # longer than TVM's default spin, so one side's spinning never overlaps the other's samples
Say = Callable[[str], None]


def _child(cases_file: Path, budget_s: float) -> None:
    import onnx

    from sparsec.verify import random_feeds

    out = []
    for case in json.loads(cases_file.read_text()):
        feeds = random_feeds(onnx.load(case["model"]), case["dims"], seed=1)
        dense = dense_session(case["model"])
        spin = sparsec_session(case["artifact"], spinning=True)
        nospin = sparsec_session(case["artifact"], spinning=False)
        fns = {"ort": runner(dense, feeds), "spin": runner(spin, feeds), "nospin": runner(nospin, feeds)}
        t = interleaved(fns, budget_s=budget_s, gap_s=LONG_GAP_S)
        out.append({"case": case["name"], **{k: v["median_ms"] for k, v in t.items()}})
    print(json.dumps(out))


def study(cases: list[dict[str, Any]], say: Say, budget_s: float = 3.0) -> list[dict[str, Any]]:
    """Rows: case, TVM_NUM_THREADS, ORT ms, sparsec ms (spin on / off)."""
    cases_file = ROOT / ".cache" / "bench" / "thread_cases.json"
    cases_file.parent.mkdir(parents=True, exist_ok=True)
    cases_file.write_text(json.dumps(cases))
    rows: list[dict[str, Any]] = []
    for threads, spin in SETTINGS:
        env = dict(os.environ)
        for key, val in (("TVM_NUM_THREADS", threads), ("TVM_THREAD_POOL_SPIN_COUNT", spin)):
            env.pop(key, None)
            if val is not None:
                env[key] = val
        setting = f"{threads or 'unset'} / {spin or 'default'}"
        say(f"thread study: TVM_NUM_THREADS / TVM_THREAD_POOL_SPIN_COUNT = {setting}")
        cmd = [sys.executable, "-m", "benchmarks.threads", "--child", str(cases_file), "--budget", str(budget_s)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
            rows.append({"tvm_threads": setting, "error": tail})
            continue
        rows += [{"tvm_threads": setting, **r} for r in json.loads(lines[-1])]
    return rows


def study_md(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| case | TVM_NUM_THREADS / TVM_THREAD_POOL_SPIN_COUNT | ORT dense ms | sparsec ms, ORT spin on"
        " | sparsec ms, ORT spin off | speedup on / off |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| - | {r['tvm_threads']} | failed: {r['error']} | | | |")
            continue
        lines.append(
            f"| {r['case']} | {r['tvm_threads']} | {r['ort']:.3f} | {r['spin']:.3f} | {r['nospin']:.3f} "
            f"| {r['ort'] / r['spin']:.2f}x / {r['ort'] / r['nospin']:.2f}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", type=Path, required=True)
    ap.add_argument("--budget", type=float, default=3.0)
    a = ap.parse_args()
    _child(a.child, a.budget)
