"""DeepSparse 1.8.0 as a peer, run in its own venv (.venv-deepsparse; it pins numpy<2) through deepsparse_worker.py.

DeepSparse needs static input shapes and handles opset-13 graphs best: opset 17's LayerNormalization is one op it
does not run itself (MiniLM-L3 as exported: 79% of ops supported). ``opset13_copy`` rewrites LayerNormalization into
opset-13 primitives so DeepSparse sees the graph it was built for; the worker reports the supported fraction.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .common import ROOT, THREADS

VENV_PY = ROOT / ".venv-deepsparse" / "bin" / "python"
WORKER = Path(__file__).with_name("deepsparse_worker.py")
SETUP = "bash benchmarks/setup_deepsparse.sh"
_OPSET17_ONLY = {"LayerNormalization"}


def _layernorm_nodes(node: onnx.NodeProto, tag: str) -> tuple[list[onnx.NodeProto], onnx.TensorProto]:
    """LayerNormalization over the last axis as ReduceMean / Sub / Mul / Sqrt / Div (opset 13)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("axis", -1) != -1 or any(node.output[1:]):
        raise ValueError(f"{node.name}: only last-axis LayerNormalization with one output is rewritten")
    eps = numpy_helper.from_array(np.array(attrs.get("epsilon", 1e-5), np.float32), f"{tag}_eps")
    x, scale = node.input[0], node.input[1]
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else ""
    t = [f"{tag}_{s}" for s in ("mean", "d", "sq", "var", "ve", "std", "n", "s")]
    nodes = [
        helper.make_node("ReduceMean", [x], [t[0]], axes=[-1], keepdims=1),
        helper.make_node("Sub", [x, t[0]], [t[1]]),
        helper.make_node("Mul", [t[1], t[1]], [t[2]]),
        helper.make_node("ReduceMean", [t[2]], [t[3]], axes=[-1], keepdims=1),
        helper.make_node("Add", [t[3], eps.name], [t[4]]),
        helper.make_node("Sqrt", [t[4]], [t[5]]),
        helper.make_node("Div", [t[1], t[5]], [t[6]]),
        helper.make_node("Mul", [t[6], scale], [t[7] if bias else node.output[0]]),
    ]
    if bias:
        nodes.append(helper.make_node("Add", [t[7], bias], [node.output[0]]))
    return nodes, eps


def opset13_copy(src: Path, dst: Path) -> Path:
    """``src`` with LayerNormalization decomposed, declared opset 13 / IR 8, checked; written to ``dst``."""
    model = onnx.load(str(src))
    nodes: list[onnx.NodeProto] = []
    for i, node in enumerate(model.graph.node):
        if node.op_type in _OPSET17_ONLY:
            new, eps = _layernorm_nodes(node, f"ln{i}")
            nodes += new
            model.graph.initializer.append(eps)
        else:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    for node in model.graph.node:  # opset-14+ attributes that only restate the opset-13 default
        keep = [a for a in node.attribute if not (node.op_type == "Reshape" and a.name == "allowzero" and a.i == 0)]
        del node.attribute[:]
        node.attribute.extend(keep)
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            op.version = 13
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(dst))
    return dst


def unavailable() -> str | None:
    """Why the peer cannot run here, or None."""
    if not VENV_PY.is_file():
        return f"no .venv-deepsparse (run `{SETUP}`)"
    return None


def run_deepsparse(
    model: Path, feeds: dict[str, np.ndarray], budget_s: float = 4.0, threads: int = THREADS
) -> dict[str, Any]:
    """Median ms of DeepSparse (and of ORT dense timed interleaved in the same worker) on ``feeds``."""
    why = unavailable()
    if why:
        return {"status": f"n/a ({why})"}
    with tempfile.TemporaryDirectory(prefix="sparsec-ds-") as tmp:
        ds_model = opset13_copy(model, Path(tmp) / "model13.onnx")
        args = [str(VENV_PY), str(WORKER), "--model", str(ds_model), "--ort-model", str(model)]
        args += ["--cores", str(threads), "--budget", str(budget_s)]
        for name, arr in feeds.items():
            path = Path(tmp) / f"{name}.npy"
            np.save(path, arr)
            args += ["--input", f"{name}={path}"]
        env = {**os.environ, "NM_DISABLE_ANALYTICS": "1"}
        proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        lines = proc.stderr.strip().splitlines() or ["no output"]
        tail = next((ln for ln in lines if "Assertion at" in ln or "Error" in ln), lines[-1]).strip()[:200]
        return {"status": f"n/a (worker failed: {tail})"}
    out: dict[str, Any] = json.loads(lines[-1])
    out["status"] = "ok"
    return out
