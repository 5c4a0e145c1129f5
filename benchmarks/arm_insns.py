"""Off-hardware performance proxy for the ARM target: executed aarch64 instructions, sparse vs dense, same layer.

Run: ``python -m benchmarks.arm_insns [--density 0.1] [--formats csr,bsr:16x1,bsr:4x4,nm:2:4] [--repeat 3]``;
``--int8``: int8 layers (DynamicQuantizeLinear + MatMulInteger + Cast + scale Mul, as quantize_dynamic writes them,
weights 90% sparse unstructured and in 1x4 blocks) for a Cortex-A76 (``--cpu cortex-a76``: dot products), dense being
ORT's aarch64 int8 MatMul, against the float csr and bsr:1x4 kernels and the int8:1x4 (sdot) one.

Each layer is a one-MatMul model compiled with ``--target arm`` twice: ``--format dense`` (the layer stays on ORT's
own aarch64 MatMul, MLAS NEON) and the sparse format. Both artifacts run in the example app (examples/arm_host)
under qemu-aarch64 with a TCG plugin that counts executed guest instructions (benchmarks/qemu_insn; Debian's qemu
ships no libinsn.so), emulating a Cortex-A76 (NEON, no SVE). One thread for ORT and TVM; medians of 3 processes.
The count of one inference is (count at 2 + R runs - count at 2 runs) / R: start-up, model loading and ORT's
first-run allocations cancel out.

Instruction counts are NOT times: a real core's speed also depends on memory, latency and issue width. The ratios
say how much work the sparse kernels do compared with ORT's dense kernel, nothing more.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

LAYERS = ((1, 384, 1536), (1, 1536, 384), (16, 384, 1536), (128, 384, 384), (128, 1536, 384))  # (M, K, N)
FORMATS = ("csr", "bsr:16x1", "bsr:4x4", "nm:2:4")
PLUGIN_SRC = Path(__file__).with_name("qemu_insn") / "insn_count.c"


def sparse_weight(fmt: str, n: int, k: int, density: float, rng: np.random.Generator) -> np.ndarray:
    """W[n, k] pruned by magnitude to ``fmt``'s pattern at ``density`` (N:M: the pattern's own density)."""
    from sparsec.prune import parse_pattern, prune_weight

    kind, _, shape = fmt.partition(":")
    spec = {"csr": f"unstructured:{1 - density}", "bsr": f"block:{shape}:{1 - density}", "nm": fmt}[kind]
    return prune_weight(rng.standard_normal((n, k)).astype(np.float32), parse_pattern(spec))


def build_plugin(folder: Path) -> Path:
    lib = folder / "libinsn_count.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", str(PLUGIN_SRC), "-o", str(lib)], check=True)
    return lib


def layer_model(w: np.ndarray) -> onnx.ModelProto:
    """y[batch, N] = x[batch, K] @ W^T as an ONNX MatMul with B = W.T."""
    from tests.passes.graphs import model

    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")
    return model([node], {"w": np.ascontiguousarray(w.T)}, {"x": ["batch", w.shape[1]]}, {"y": ["batch", w.shape[0]]})


def int8_layer_model(w: np.ndarray) -> onnx.ModelProto:
    """y[batch, N] = float(MatMulInteger(q(x), W^T)) * (x_scale * 0.01), an int8-valued W[N, K]."""
    from tests.targets.arm_models import dynamic_int8_layer

    return dynamic_int8_layer(np.ascontiguousarray(w.T), np.array(0.01))


def int8_weight(rng: np.random.Generator, n: int, k: int, pattern: str) -> np.ndarray:
    """An int8-valued W[N, K] at 90% sparsity, unstructured or in 1x4 blocks."""
    from sparsec.prune import parse_pattern, prune_weight

    w = rng.integers(-127, 128, (n, k)).astype(np.float32)
    w[w == 0] = 1
    return prune_weight(w, parse_pattern(f"{pattern}:0.9"))


def count(artifact: Path, x: np.ndarray, plugin: Path, repeat: int) -> int:
    from sparsec.targets.arm.qemu import run_artifact

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "count.txt"
        run_artifact(artifact, {"x": x}, threads=1, qemu_args=("-plugin", f"{plugin},out={out}"), repeat=repeat)
        return int(out.read_text().split()[0])


def per_run(artifact: Path, x: np.ndarray, plugin: Path, repeat: int, samples: int = 3) -> float:
    """Instructions of one steady-state inference: the first two runs (ORT's first-run allocations) cancel out.
    Medians of ``samples`` processes each: counts vary by ~1e-4 between identical runs, with rare large outliers."""
    base = float(np.median([count(artifact, x, plugin, 2) for _ in range(samples)]))
    more = float(np.median([count(artifact, x, plugin, 2 + repeat) for _ in range(samples)]))
    return (more - base) / repeat


def compile_arm(m: onnx.ModelProto, folder: Path, fmt: str, cpu: str = "") -> Path:
    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions

    src = folder / f"{fmt.replace(':', '_')}.onnx"
    onnx.save(m, str(src))
    res = compile_model(
        src, src.with_suffix(".sparsec"), CompileOptions(target="arm", cpu=cpu, format=fmt, verify=True)
    )
    if fmt != "dense":
        assert [la["format"] for la in res.layers] == [fmt], res.layers  # the layer really went sparse
    return res.artifact


def _header(lead: list[str], formats: tuple[str, ...] | list[str]) -> None:
    """A Markdown table's header: the ``lead`` columns, then one per format."""
    cols = [*lead, *formats]
    print("| " + " | ".join(cols) + " |")
    print("|" + " --- |" * len(cols))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--density", type=float, default=0.1, help="kept fraction for csr/bsr (N:M: its own)")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--repeat", type=int, default=3, help="extra runs whose instructions are counted")
    ap.add_argument("--int8", action="store_true", help="int8 layers: ORT's int8 MatMul vs csr and int8:1x4")
    args = ap.parse_args()
    if args.int8:
        int8_main(args.repeat)
        return
    formats = args.formats.split(",")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="arm-insns-") as tmp:
        folder = Path(tmp)
        plugin = build_plugin(folder)
        print(f"aarch64 instructions per inference, sparse / dense (ORT MLAS), density {args.density}, 1 thread")
        _header(["M", "K x N", "dense insns"], formats)
        for m, k, n in LAYERS:
            x = rng.standard_normal((m, k)).astype(np.float32)
            ratios = []
            dense = None
            for fmt in formats:
                w = sparse_weight(fmt, n, k, args.density, rng)
                sub = folder / f"{m}_{k}_{n}_{fmt.replace(':', '_')}"
                sub.mkdir()
                model = layer_model(w)
                if dense is None:
                    dense = per_run(compile_arm(model, sub, "dense"), x, plugin, args.repeat)
                ratios.append(per_run(compile_arm(model, sub, fmt), x, plugin, args.repeat) / dense)
            cells = " | ".join(f"{r:.3f}" for r in ratios)
            print(f"| {m} | {k}x{n} | {dense / 1e6:.2f} M | {cells} |", flush=True)


def int8_main(repeat: int) -> None:
    """The --int8 table: per layer and weight pattern, csr and int8:1x4 instructions over ORT's int8 MatMul's."""
    rng = np.random.default_rng(0)
    cpu = "cortex-a76"
    formats = ("csr", "bsr:1x4", "int8:1x4")
    with tempfile.TemporaryDirectory(prefix="arm-insns-") as tmp:
        folder = Path(tmp)
        plugin = build_plugin(folder)
        print(f"aarch64 instructions per inference of an int8 layer, sparse / ORT's int8 MatMul, 90% sparse, {cpu}")
        _header(["weights", "M", "K x N", "ORT int8 insns"], formats)
        for pattern in ("unstructured", "block:1x4"):
            for m, k, n in LAYERS:
                x = rng.standard_normal((m, k)).astype(np.float32)
                model = int8_layer_model(int8_weight(rng, n, k, pattern))
                sub = folder / f"{pattern.replace(':', '_')}_{m}_{k}_{n}"
                sub.mkdir()
                dense = per_run(compile_arm(model, sub, "dense", cpu), x, plugin, repeat)
                cells = [per_run(compile_arm(model, sub, f, cpu), x, plugin, repeat) / dense for f in formats]
                print(
                    f"| {pattern} | {m} | {k}x{n} | {dense / 1e6:.2f} M | "
                    + " | ".join(f"{c:.3f}" for c in cells)
                    + " |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
