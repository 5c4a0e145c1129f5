"""Measure the wasm cost model (``passes/cost_data/wasm.json``) in node: ``python -m benchmarks.wasm_calibrate``.

The native calibration (``sparsec tune-cost-model``) times kernels through TVM on this host; wasm kernels only run
inside a JS engine, so this script times whole one-layer models instead, in node, single-threaded, interleaved
(benchmarks/wasm_node.mjs): onnxruntime-web's MatMul on the dense weight vs the sparsec wasm artifact (the sparse
step's JS cost included: copies in and out of wasm memory), per format family at M = 1, 16, 128 on three layer
shapes at 90% sparsity (N:M at its own 50%). Fitted per (format, M): ``t_us = M * a * stored / 1000 + c``
(least squares, a, c >= 0; b = 0). Dense gets c = 0: inside a model a MatMul runs in a segment that runs anyway,
whereas a sparse step pays its JS overhead and splits a segment.

``--int8`` measures the int8 layers only and merges them into the existing table: layers as quantize_dynamic writes
them (DynamicQuantizeLinear, MatMulInteger, Cast, scale Mul) with int8 weights 90% sparse in 1x4 blocks, on the same
shapes and 384x384, same M. sparsec's int8:1x4 (its quantize step included, as onnxruntime-web's int8 layer
includes its quantization) gives the ``int8:1x4`` row and onnxruntime-web's float32 MatMul over its int8 layer gives
``ort_int8_faster`` (per M, the median over the shapes; the cost model divides the dense table by it for an int8
layer left dense); and ``int8_convert_ns``, what an integer layer on a float kernel pays per activation value
instead (onnxruntime-web's DynamicQuantizeLinear and DequantizeLinear, where the int8 kernels' quantize steps run on
kernels.wasm).
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

from sparsec.compiler import compile_model
from sparsec.formats import get_format
from sparsec.options import CompileOptions
from sparsec.prune import parse_pattern, prune_model
from sparsec.targets.wasm.node_runner import write_tensors
from sparsec.targets.wasm.toolchain import node

from .wasm_node import OUT, SCRIPT

SHAPES = ((384, 1536), (1536, 384), (1024, 1024))  # K x N
FORMATS = {"csr": "unstructured:0.9", "bsr:4x4": "block:4x4:0.9", "bsr:16x1": "block:16x1:0.9", "nm:2:4": "nm:2:4"}
MS = (1, 16, 128)
# and a small layer (MiniLM's Q/K/V/O): with the three large ones only, the int8 fit put the per-step overhead in
# an intercept of 0.28 ms at M = 128, and auto kept MiniLM's 384x384 layers on float kernels that ran slower
INT8_SHAPES = (*SHAPES, (384, 384))
DATA = Path(__file__).resolve().parent.parent / "passes" / "cost_data" / "wasm.json"


def layer(k: int, n: int, pattern: str, seed: int) -> onnx.ModelProto:
    w = np.random.default_rng(seed).standard_normal((k, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "layer",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["m", n])],
        [numpy_helper.from_array(w, "w")],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return prune_model(m, parse_pattern(pattern))[0]


def stored(fmt: str, w: np.ndarray) -> int:
    return int(sum(a.size for name, a in get_format(fmt).pack(w.T.copy()).items() if name in ("values", "data")))


def time_pair(model_path: Path, art: Path, m: int, k: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="sparsec-wasm-cal-") as tmp:
        x = np.random.default_rng(m).standard_normal((m, k)).astype(np.float32)
        write_tensors(Path(tmp), {"x": x})
        cmd = [node(), str(SCRIPT), str(art), str(model_path), tmp, "15"]
        res = json.loads(
            subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        )
    return float(res["ort_ms"]) * 1e3, float(res["sparsec_ms"]) * 1e3


def fit(points: list[tuple[int, int, float]], with_c: bool) -> list[float]:
    """[a_ns, 0, c_us] for t_us = m * a * stored / 1000 + c over (m, stored, t_us) points."""
    x = np.array([[m * s / 1000.0, 1.0 if with_c else 0.0] for m, s, _ in points])
    y = np.array([t for *_, t in points])
    (a, c), *_ = np.linalg.lstsq(x, y, rcond=None)
    if c < 0 or not with_c:
        a, c = float(np.dot(x[:, 0], y) / np.dot(x[:, 0], x[:, 0])), 0.0
    return [round(max(float(a), 1e-6), 6), 0.0, round(float(c), 3)]


def quantize_then_float(k: int) -> onnx.ModelProto:
    """DynamicQuantizeLinear then DequantizeLinear: how a float kernel's input is made from an integer layer's."""
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "convert",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["m", k])],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def int8_main() -> None:
    """Measure the int8 layers and merge them into the existing table."""
    from .arm_insns import int8_layer_model, int8_weight

    OUT.mkdir(parents=True, exist_ok=True)
    points_by_m: dict[int, list[tuple[int, int, float]]] = {}
    ratios: dict[int, list[float]] = {}
    for i, (k, n) in enumerate(INT8_SHAPES):
        # y = float(MatMulInteger(q(x), W)) * (x_scale * 0.01), W 90% sparse in 1x4 blocks (1 output x 4 inputs)
        model = int8_layer_model(int8_weight(np.random.default_rng(i), n, k, "block:1x4"))
        path = OUT / f"cal_{k}x{n}_int8.onnx"
        onnx.save(model, str(path))
        dense_path = OUT / f"cal_{k}x{n}_float.onnx"
        onnx.save(layer(k, n, "unstructured:0.0", seed=i), str(dense_path))
        opts = CompileOptions(target="wasm", format="int8:1x4", verify=False)
        art = compile_model(path, path.with_suffix(".sparsec"), opts).artifact
        int8 = get_format("int8:1x4")
        stored = int8.nnz_stored(int8.pack(numpy_helper.to_array(model.graph.initializer[0]).T.astype(np.float32)))
        for m in MS:
            # both sides quantize the activation: ORT inside its int8 layer, sparsec in its quantize step
            int8_us, sparse_us = time_pair(path, art, m, k)
            float_us, _ = time_pair(dense_path, art, m, k)
            ratios.setdefault(m, []).append(float_us / int8_us)
            points_by_m.setdefault(m, []).append((m, stored, sparse_us))
            print(
                f"{k}x{n} int8:1x4 M={m:3d}: onnxruntime-web float32 {float_us:8.1f} us, int8 {int8_us:8.1f} us; "
                f"sparsec {sparse_us:8.1f} us",
                flush=True,
            )
    # an integer layer on a float kernel: its activation quantized by onnxruntime-web's DynamicQuantizeLinear (the
    # int8 kernels' quantize steps run on kernels.wasm instead), then made float32 by its DequantizeLinear
    k = SHAPES[1][0]
    convert_path = OUT / f"cal_{k}_convert.onnx"
    onnx.save(quantize_then_float(k), str(convert_path))
    art = OUT / f"cal_{k}x{SHAPES[1][1]}_int8.sparsec"
    per_value = [time_pair(convert_path, art, m, k)[0] * 1000.0 / (m * k) for m in MS[1:]]
    print(f"DynamicQuantizeLinear + DequantizeLinear per value at M = {MS[1:]}: {per_value} ns", flush=True)
    doc = json.loads(DATA.read_text())
    doc["int8_convert_ns"] = {"simd128": round(float(np.median(per_value)), 2)}
    # no intercept from M = 16, as the float rows' fits ended (measured by the same harness, they carry the sparse
    # step's own overhead in their slope): an int8 intercept charged it to int8 alone (0.32 ms at M = 128), and auto
    # kept MiniLM's layers on float kernels that ran slower in the same session (1.10x / 1.23x of onnxruntime-web
    # at batch 1 / 8 against 1.21x / 1.58x all int8:1x4)
    doc["isa"]["simd128"]["int8:1x4"] = {str(m): fit(pts, with_c=m == 1) for m, pts in points_by_m.items()}
    doc["ort_int8_faster"] = {"simd128": {str(m): round(float(np.median(r)), 2) for m, r in ratios.items()}}
    DATA.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"onnxruntime-web int8 over float32 by M: {doc['ort_int8_faster']['simd128']}; wrote {DATA}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--int8", action="store_true", help="measure the int8 layers only, merged into the table")
    if ap.parse_args().int8:
        int8_main()
        return
    OUT.mkdir(parents=True, exist_ok=True)
    points: dict[str, dict[int, list[tuple[int, int, float]]]] = {}
    for i, (k, n) in enumerate(SHAPES):
        for fmt, pattern in FORMATS.items():
            model = layer(k, n, pattern, seed=i)
            path = OUT / f"cal_{k}x{n}_{fmt.replace(':', '')}.onnx"
            onnx.save(model, str(path))
            opts = CompileOptions(target="wasm", format=fmt, verify=False)
            art = compile_model(path, path.with_suffix(".sparsec"), opts).artifact
            w = numpy_helper.to_array(model.graph.initializer[0])
            for m in MS:
                dense_us, sparse_us = time_pair(path, art, m, k)
                points.setdefault("dense", {}).setdefault(m, []).append((m, k * n, dense_us))
                points.setdefault(fmt, {}).setdefault(m, []).append((m, stored(fmt, w), sparse_us))
                print(f"{k}x{n} {fmt:9s} M={m:3d}: dense {dense_us:8.1f} us  sparse {sparse_us:8.1f} us", flush=True)
    table = {fmt: {str(m): fit(pts, with_c=fmt != "dense") for m, pts in by_m.items()} for fmt, by_m in points.items()}
    for family, preset in (("bsr", "bsr:4x4"), ("nm", "nm:2:4")):
        table[family] = table[preset]  # other presets of the family use the measured one's constants
    source = (
        "measured by python -m benchmarks.wasm_calibrate: node, onnxruntime-web wasm vs sparsec wasm, 1 thread, "
        "one-layer models, interleaved medians"
    )
    doc = {"source": source, "sources": {"simd128": source}, "isa": {"simd128": table}}
    DATA.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {DATA}")


if __name__ == "__main__":
    main()
