"""Off-hardware performance proxy for the ARM target: executed aarch64 instructions, sparse vs dense, same layer.

Run: ``python -m benchmarks.arm_insns [--density 0.1] [--formats csr,bsr:16x1,bsr:4x4,nm:2:4] [--repeat 3]``.

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

from .kernels import sparse_weight

LAYERS = ((1, 384, 1536), (1, 1536, 384), (16, 384, 1536), (128, 384, 384), (128, 1536, 384))  # (M, K, N)
FORMATS = ("csr", "bsr:16x1", "bsr:4x4", "nm:2:4")
PLUGIN_SRC = Path(__file__).with_name("qemu_insn") / "insn_count.c"


def build_plugin(folder: Path) -> Path:
    lib = folder / "libinsn_count.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", str(PLUGIN_SRC), "-o", str(lib)], check=True)
    return lib


def layer_model(w: np.ndarray) -> onnx.ModelProto:
    """y[batch, N] = x[batch, K] @ W^T as an ONNX MatMul with B = W.T."""
    from tests.passes.graphs import model

    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")
    return model([node], {"w": np.ascontiguousarray(w.T)}, {"x": ["batch", w.shape[1]]}, {"y": ["batch", w.shape[0]]})


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


def compile_arm(m: onnx.ModelProto, folder: Path, fmt: str) -> Path:
    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions

    src = folder / f"{fmt.replace(':', '_')}.onnx"
    onnx.save(m, str(src))
    res = compile_model(src, src.with_suffix(".sparsec"), CompileOptions(target="arm", format=fmt, verify=True))
    if fmt != "dense":
        assert [la["format"] for la in res.layers] == [fmt], res.layers  # the layer really went sparse
    return res.artifact


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--density", type=float, default=0.1, help="kept fraction for csr/bsr (N:M: its own)")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--repeat", type=int, default=3, help="extra runs whose instructions are counted")
    args = ap.parse_args()
    formats = args.formats.split(",")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="arm-insns-") as tmp:
        folder = Path(tmp)
        plugin = build_plugin(folder)
        print(f"aarch64 instructions per inference, sparse / dense (ORT MLAS), density {args.density}, 1 thread")
        print("| M | K x N | dense insns | " + " | ".join(formats) + " |")
        print("| --- | --- | --- | " + " | ".join("---" for _ in formats) + " |")
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


if __name__ == "__main__":
    main()
