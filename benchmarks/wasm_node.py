"""WebAssembly in node: onnxruntime-web's wasm backend on the dense model vs the sparsec wasm artifact.

    python -m benchmarks.wasm_node                # the README table: MiniLM-L3 90% unstructured + a sparse MLP
    python -m benchmarks.wasm_node --model X.onnx --dim batch_size=1 --dim sequence_length=128

Both sides run in ONE node process (benchmarks/wasm_node.mjs) on the same inputs, single-threaded (onnxruntime-web
numThreads=1; sparsec's kernels are single-threaded in wasm), interleaved rounds, ratio of medians. The baseline is
the compiled model itself (pruned weights stored dense) run by the same onnxruntime-web build the artifact carries.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from models.synthetic import sparse_matrix
from sparsec.compiler import compile_model
from sparsec.options import CompileOptions
from sparsec.targets.wasm.node_runner import write_tensors
from sparsec.targets.wasm.toolchain import node
from sparsec.verify import random_feeds

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".cache" / "bench" / "wasm"
SCRIPT = Path(__file__).with_name("wasm_node.mjs")


def sparse_mlp(width: int = 1024, layers: int = 3, density: float = 0.1, seed: int = 0) -> onnx.ModelProto:
    """x[batch, width] -> (MatMul + bias + Relu) x layers, 90% unstructured zeros in every weight."""
    rng = np.random.default_rng(seed)
    nodes, inits, cur = [], [], "x"
    for i in range(layers):
        w = sparse_matrix(rng, (width, width), density)
        b = rng.standard_normal(width).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [
            helper.make_node("MatMul", [cur, f"w{i}"], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
            helper.make_node("Relu", [f"a{i}"], [f"h{i}"]),
        ]
        cur = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info(cur, onnx.TensorProto.FLOAT, ["batch", width])],
        inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def measure(model_path: Path, dims: dict[str, int], rounds: int, name: str, fmt: str = "auto") -> dict[str, object]:
    """Compile ``model_path`` for wasm (verified in node), then time both sides in one node process."""
    opts = CompileOptions(target="wasm", dims=dims, format=fmt)
    art = compile_model(model_path, OUT / f"{name}.sparsec", opts).artifact
    layers = json.loads((art / "manifest.json").read_text())["layers"]
    feeds = random_feeds(onnx.load(str(model_path)), dims, seed=1)
    with tempfile.TemporaryDirectory(prefix="sparsec-wasm-bench-") as tmp:
        write_tensors(Path(tmp), feeds)
        cmd = [node(), str(SCRIPT), str(art), str(model_path), tmp, str(rounds)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    formats = ", ".join(sorted({la["format"] for la in layers if la["format"] != "dense"}))
    sparse = sum(la["format"] != "dense" for la in layers)
    res.update(model=name, dims=dims, sparse_layers=f"{sparse}/{len(layers)} ({formats or 'none'})")
    return res


def default_cases(rounds: int) -> list[dict[str, object]]:
    from models.minilm import fetch_minilm
    from sparsec.prune import parse_pattern, prune_model

    OUT.mkdir(parents=True, exist_ok=True)
    results = []
    mlp_path = OUT / "mlp90.onnx"
    onnx.save(sparse_mlp(), str(mlp_path))
    for batch in (1, 16):
        results.append(measure(mlp_path, {"batch": batch}, rounds, f"mlp90_b{batch}"))
    minilm = OUT / "minilm90.onnx"
    if not minilm.is_file():
        pruned, _ = prune_model(onnx.load(str(fetch_minilm())), parse_pattern("unstructured:0.9"))
        onnx.save(pruned, str(minilm))
    for batch in (1, 8):
        dims = {"batch_size": batch, "sequence_length": 128}
        results.append(measure(minilm, dims, max(5, rounds // 2), f"minilm90_b{batch}"))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="an ONNX model (default: the README cases)")
    ap.add_argument("--dim", action="append", default=[], help="NAME=VALUE for a symbolic input dimension")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--format", default="auto", help="sparsec --format for --model (default: auto)")
    args = ap.parse_args()
    if args.model:
        dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)}
        results = [measure(args.model, dims, args.rounds, args.model.stem, args.format)]
    else:
        results = default_cases(args.rounds)
    print("| model | dims | sparse layers | onnxruntime-web ms | sparsec wasm ms | speedup | max rel diff |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        dims = ", ".join(f"{k}={v}" for k, v in r["dims"].items())  # type: ignore[union-attr]
        print(
            f"| {r['model']} | {dims} | {r['sparse_layers']} | {r['ort_ms']:.2f} | {r['sparsec_ms']:.2f} | "
            f"{r['speedup']:.2f}x | {r['max_rel_diff']:.1e} |"
        )


if __name__ == "__main__":
    main()
