"""``python -m benchmarks.int8``: pruned then int8-quantized models, sparsec against ORT on the same int8 model.

MiniLM-L3 pruned 90% then ``sparsec quantize`` (``dynamic``: MatMulInteger; ``qdq``: QuantizeLinear/DequantizeLinear;
``qoperator``: QLinearMatMul with uint8 activations, ``qoperator-s8`` with int8 ones), and pruned 90% in 1x4 blocks
then quantized dynamically, as QDQ and as QOperator (and 50% as QOperator with int8 activations), seq 128, batch 1
and 8, each compiled with ``--dim`` for its batch; and the generated CNNs pruned 80% then quantized dynamically
(ConvInteger), as QDQ and as QOperator with int8 activations (QLinearConv); ``--modes qdq,...`` runs some modes
only. Per row, interleaved in one process, 2 threads:
ORT on the int8 model, the sparsec artifact, ORT on the float32 pruned model, and DeepSparse 1.8 on the int8 model
where it runs. Prints a Markdown table and writes .cache/bench/int8.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import CACHE, THREADS, dense_session, max_error, runner, set_tvm_threads, source_digest, sparsec_session
from .e2e import SEQ, pruned_model
from .report import md_table

Say = Any
MODES = ("dynamic", "qdq", "qoperator", "qoperator-s8")


def _say(msg: str) -> None:
    print(f"[int8] {msg}", file=sys.stderr, flush=True)


def _cli(*args: str) -> None:
    cli = Path(sys.executable).with_name("sparsec")
    proc = subprocess.run([str(cli), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"sparsec {args[0]} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")


def _quantized(src: Path, mode: str) -> Path:
    """``sparsec quantize``'d ``src``; mode ``qoperator-s8``: QOperator with int8 activations."""
    out = src.with_name(f"{src.stem}_{mode}.onnx")
    if not out.is_file():
        how = ["--mode", "qoperator", "--activations", "int8"] if mode == "qoperator-s8" else ["--mode", mode]
        _cli("quantize", str(src), "-o", str(out), *how)
    return out


def _compiled(model: Path, dims: dict[str, int], tag: str) -> tuple[Path, str, float]:
    """The artifact (compiled and verified: its largest error against the compile's reference), its sparse layers."""
    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions

    art = model.with_name(f"{model.stem}_{tag}.sparsec")
    shutil.rmtree(art, ignore_errors=True)
    res = compile_model(model, art, CompileOptions(target="x86", format="auto", dims=dims))
    sparse = [la for la in res.layers if la["format"] != "dense"]
    kinds = "+".join(sorted({la["format"] for la in sparse})) or "dense"
    return art, f"{len(sparse)}/{len(res.layers)} {kinds}", max(res.errors.values(), default=0.0)


def _row(
    name: str,
    int8: Path,
    fp32: Path,
    compiled: tuple[Path, str, float],
    feeds: dict[str, np.ndarray],
    budget_s: float,
    ds: bool,
) -> dict[str, Any]:
    from sparsec.timing import interleaved

    from .deepsparse_peer import run_deepsparse

    art, chosen, verified = compiled
    q, f, s = dense_session(int8), dense_session(fp32), sparsec_session(art)
    err = max_error(s.run(None, feeds), q.run(None, feeds))
    t = interleaved({"int8": runner(q, feeds), "sparsec": runner(s, feeds), "fp32": runner(f, feeds)},
                    budget_s=budget_s, sample_ms=0.0)  # fmt: skip
    row: dict[str, Any] = {"model": name, "chosen": chosen, "max_rel_error": err, "verified_error": verified,
                           **{f"{k}_ms": v["median_ms"] for k, v in t.items()}}  # fmt: skip
    row["vs_int8"] = row["int8_ms"] / row["sparsec_ms"]
    row["vs_fp32"] = row["fp32_ms"] / row["sparsec_ms"]
    row["deepsparse"] = run_deepsparse(int8, feeds, budget_s=budget_s) if ds else {"status": "n/a (--no-deepsparse)"}
    peer = row["deepsparse"].get("deepsparse_ms", row["deepsparse"]["status"])
    _say(f"{name}: int8 {row['int8_ms']:.2f} ms, sparsec {row['sparsec_ms']:.2f} ms ({row['vs_int8']:.2f}x), "
         f"fp32 {row['fp32_ms']:.2f} ms; deepsparse {peer}")  # fmt: skip
    return row


def minilm_rows(budget_s: float, ds: bool, wanted: set[str]) -> list[dict[str, Any]]:
    """Unstructured 90% (dynamic, QDQ and QOperator with uint8 and with int8 activations), 90% in 1x4 blocks (the
    int8:1x4 kernels' blocks; dynamic, QDQ and QOperator), and 50% QOperator with int8 activations (layers that stay
    dense run on ORT's float32 MatMul)."""
    from onnx import load

    from sparsec.verify import random_feeds

    rows = []
    for pattern, label, modes in (
        ("unstructured:0.9", "90%", ("dynamic", "qdq", "qoperator", "qoperator-s8")),
        ("block:1x4:0.9", "90% 1x4 blocks", ("dynamic", "qdq", "qoperator")),
        ("unstructured:0.5", "50%", ("qoperator-s8",)),
    ):
        if not set(modes) & wanted:
            continue
        fp32 = pruned_model(pattern, _say)
        for mode in (m for m in modes if m in wanted):
            int8 = _quantized(fp32, mode)
            for batch in (1, 8):
                dims = {"batch_size": batch, "sequence_length": SEQ}
                compiled = _compiled(int8, dims, f"b{batch}")
                feeds = random_feeds(load(str(int8)), dims, seed=batch)
                rows.append(_row(f"MiniLM-L3 {label} {mode} b{batch}", int8, fp32, compiled, feeds, budget_s, ds))
    return rows


def cnn_rows(budget_s: float, wanted: set[str]) -> list[dict[str, Any]]:
    import onnx

    from models import cnn
    from sparsec.prune import parse_pattern, prune_model

    folder = CACHE / "int8" / source_digest()
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, resolution in (("resnet", 64), ("mobilenet_v2", 96)):
        fp32 = folder / f"{name}80.onnx"
        if not fp32.is_file():
            dense = getattr(cnn, name)(resolution=resolution, classes=10)
            onnx.save(prune_model(dense, parse_pattern("unstructured:0.8"))[0], str(fp32))
        feeds = {"image": np.random.default_rng(1).standard_normal((1, 3, resolution, resolution), np.float32)}
        for mode in (m for m in ("dynamic", "qdq", "qoperator-s8") if m in wanted):
            int8 = _quantized(fp32, mode)
            compiled = _compiled(int8, {}, "b1")
            rows.append(_row(f"{name} {resolution}px 80% {mode} b1", int8, fp32, compiled, feeds, budget_s, False))
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    header = ["model", "sparse layers", "ORT int8 ms", "sparsec ms", "vs ORT int8", "ORT fp32 ms", "vs ORT fp32",
              "DeepSparse int8 ms", "verified error", "rel diff vs ORT int8"]  # fmt: skip
    body = []
    for r in rows:
        ds = r["deepsparse"]
        body.append([
            r["model"], r["chosen"], f"{r['int8_ms']:.2f}", f"{r['sparsec_ms']:.2f}", f"**{r['vs_int8']:.2f}x**",
            f"{r['fp32_ms']:.2f}", f"{r['vs_fp32']:.2f}x",
            f"{ds['deepsparse_ms']:.2f}" if "deepsparse_ms" in ds else ds["status"],
            f"{r['verified_error']:.1e}", f"{r['max_rel_error']:.1e}",
        ])  # fmt: skip
    return md_table(header, body)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.int8", description=__doc__.splitlines()[0])
    ap.add_argument("--no-deepsparse", action="store_true")
    ap.add_argument("--no-cnn", action="store_true")
    ap.add_argument("--no-minilm", action="store_true", help="the CNN rows only")
    ap.add_argument("--budget", type=float, default=6.0, help="seconds of interleaved timing per row")
    ap.add_argument("--modes", default=",".join(MODES), help=f"quantization modes to run (of {','.join(MODES)})")
    a = ap.parse_args(argv)
    set_tvm_threads(THREADS)
    t0 = time.perf_counter()
    wanted = set(a.modes.split(","))
    if wanted - set(MODES):
        ap.error(f"unknown modes {sorted(wanted - set(MODES))} (known: {', '.join(MODES)})")
    rows = [] if a.no_minilm else minilm_rows(a.budget, not a.no_deepsparse, wanted)
    rows += [] if a.no_cnn else cnn_rows(a.budget, wanted)
    out = CACHE / "int8.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "seconds": time.perf_counter() - t0}, indent=1, default=str))
    print(table(rows))


if __name__ == "__main__":
    main()
