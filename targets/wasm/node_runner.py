"""Run a wasm artifact in node on numpy feeds (``sparsec run``, compile-time verification, the tests).

Feeds and outputs cross the process boundary as raw little-endian files described by a JSON file
(``js/run_node.mjs`` reads and writes them); any failure of the runner is a one-line SparsecError.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sparsec.errors import SparsecError
from sparsec.ml_values import from_json

from .toolchain import node

RUNNER = Path(__file__).with_name("js") / "run_node.mjs"
DTYPES = ("float32", "float64", "int64", "int32", "int8", "uint8", "bool")
TIMEOUT_S = 600


def write_tensors(folder: Path, tensors: dict[str, np.ndarray]) -> None:
    """``index.json`` + one raw file per tensor."""
    index = {}
    for i, (name, value) in enumerate(tensors.items()):
        a: np.ndarray = np.ascontiguousarray(value).reshape(np.shape(value))  # (ascontiguousarray makes 0-d 1-d)
        if str(a.dtype) not in DTYPES:
            raise SparsecError(f"input {name!r}: dtype {a.dtype} is not supported by the wasm runner")
        file = f"t{i}.bin"
        (folder / file).write_bytes(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
        index[name] = {"dtype": str(a.dtype), "dims": [int(d) for d in a.shape], "file": file}
    (folder / "index.json").write_text(json.dumps(index))


def read_tensors(folder: Path) -> dict[str, Any]:
    """The outputs ``js/run_node.mjs`` wrote (ZipMap's sequence of maps as a list of dicts)."""
    index = json.loads((folder / "index.json").read_text())
    out: dict[str, Any] = {}
    for name, meta in index.items():
        if "json" in meta:
            out[name] = from_json(json.loads((folder / meta["json"]).read_text()))
            continue
        data = np.frombuffer((folder / meta["file"]).read_bytes(), dtype=np.dtype(meta["dtype"]).newbyteorder("<"))
        out[name] = data.astype(meta["dtype"]).reshape(meta["dims"])
    return out


def run_in_node(artifact: Path, feeds: dict[str, np.ndarray]) -> list[Any]:
    """The artifact's outputs (plan order) on ``feeds``, computed by ``sparsec.mjs`` in node."""
    with tempfile.TemporaryDirectory(prefix="sparsec-node-") as tmp:
        ins, outs = Path(tmp) / "in", Path(tmp) / "out"
        ins.mkdir()
        outs.mkdir()
        write_tensors(ins, feeds)
        try:
            proc = subprocess.run(
                [node(), str(RUNNER), str(Path(artifact).resolve()), str(ins), str(outs)],
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise SparsecError(f"wasm artifact did not finish in node within {TIMEOUT_S} s") from None
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            raise SparsecError(f"wasm artifact failed in node: {lines[-1] if lines else f'exit {proc.returncode}'}")
        order = json.loads((Path(artifact) / "plan.json").read_text())["outputs"]
        got = read_tensors(outs)
        return [got[o["name"]] for o in order]
