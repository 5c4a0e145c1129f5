"""``python -m benchmarks.run`` (``make bench``): layer sweep + end to end (+ DeepSparse).

Prints Markdown tables (paste into README's "Measured") and writes all numbers to .cache/bench/latest.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .common import CACHE, THREADS, set_tvm_threads
from .report import e2e_md, layers_md, machine, machine_md


def _say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a subset: 2 shapes, 3 patterns, M in {1, 128}")
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--layers-only", action="store_true")
    only.add_argument("--e2e-only", action="store_true")
    ap.add_argument("--no-deepsparse", action="store_true", help="skip the DeepSparse peer")
    ap.add_argument("--no-auto", action="store_true", help="layer sweep: skip the --format auto column")
    ap.add_argument("-o", "--output", type=Path, default=CACHE / "latest.json")
    a = ap.parse_args(argv)

    set_tvm_threads(THREADS)
    t0 = time.perf_counter()
    info = machine()
    cmd = "python -m benchmarks.run " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    out: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "command": cmd.strip()}
    out["machine"] = info
    layers: list[dict[str, Any]] = []
    e2e: list[dict[str, Any]] = []
    if not a.e2e_only:
        from .layers import run_layers

        layers = run_layers(quick=a.quick, auto=not a.no_auto, say=_say)
        out["layers"] = layers
    if not a.layers_only:
        from .e2e import run_e2e

        e2e = run_e2e(deepsparse=not a.no_deepsparse, say=_say, quick=a.quick)
        out["e2e"] = e2e
    out["seconds"] = time.perf_counter() - t0
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps(out, indent=1, default=str))

    print(f"`{out['command']}` ({out['date']}, {out['seconds']:.0f} s)\n\nMachine: {machine_md(info)}\n")
    print(
        f"Threads: ORT intra_op_num_threads={THREADS}, inter_op=1; sparsec sessions run their kernels on that pool "
        f"(TVM_NUM_THREADS={info['TVM_NUM_THREADS']} sizes TVM's own pool, used only by `benchmarks.kernels`)."
    )
    print("Timing: interleaved runs (A B A B ...), median per side; speedup = ORT dense ms / other ms.")
    print("`*`: other processes kept more than 20% of the CPUs busy just before that measurement (less reliable).\n")
    if layers:
        print("### Layer sweep (one MatMul, X[M, K] @ W[K, N])\n")
        print(layers_md(layers) + "\n")
    if e2e:
        print("### End to end: paraphrase-MiniLM-L3, sequence 128\n")
        print(e2e_md(e2e) + "\n")
        print(
            "ORT dense runs the pruned model as exported (dynamic shapes). DeepSparse runs a static-shape opset-13 copy"
            " (LayerNormalization decomposed) in .venv-deepsparse; its speedup is against ORT dense timed interleaved"
            " in that same worker process (same onnxruntime version, same inputs, same 2 threads).\n"
        )
    print(f"JSON: {a.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
