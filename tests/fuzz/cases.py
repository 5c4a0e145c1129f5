"""One fuzz case, run inside a worker process: build the input from (kind, seed), exercise sparsec, classify.

Outcomes: ``ok`` (worked), ``error`` (refused cleanly: a SparsecError, or an ONNX Runtime error status at run
time). Any other exception propagates and the worker reports it as ``bug``; a dead worker is a ``crash``.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from sparsec.artifact import MANIFEST, MODEL, sha256_file
from sparsec.errors import SparsecError

from .mutators import mutate_bytes, mutate_model, mutate_source_model

KINDS = ("model", "artifact-raw", "artifact-resealed", "inputs")
WEIGHTS = (3, 2, 4, 2)  # how often each kind is drawn


def pick_kind(rng: random.Random) -> str:
    return rng.choices(KINDS, WEIGHTS)[0]


def _is_ort_error(e: BaseException) -> bool:
    return type(e).__module__.startswith("onnxruntime")


def _feeds(shape_dims: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"x": rng.standard_normal((shape_dims["batch"], shape_dims["seq"], 16)).astype(np.float32)}


def _run_artifact(artifact: Path, feeds: dict[str, Any]) -> str:
    from sparsec.runtime import InferenceSession

    sess = InferenceSession(artifact)  # SparsecError when refused
    try:
        sess.run(None, feeds)
    except Exception as e:
        if _is_ort_error(e):
            return "error"
        raise
    return "ok"


def _reseal(artifact: Path, name: str) -> None:
    path = artifact / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["files"][name] = sha256_file(artifact / name)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


class Fixtures:
    """Seed model and compiled artifacts (built once by the harness, read-only here)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.model = root / "seed.onnx"
        self.artifacts = sorted(p for p in root.iterdir() if p.suffix == ".sparsec")


def run_case(fx: Fixtures, kind: str, seed: int) -> tuple[str, str]:
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="sparsec-fuzz-") as tmp:
        work = Path(tmp)
        if kind == "model":
            return _model_case(fx, work, rng)
        art = work / "a.sparsec"
        shutil.copytree(rng.choice(fx.artifacts), art)
        feeds = _feeds({"batch": rng.randint(1, 3), "seq": rng.randint(1, 9)}, nrng)
        try:
            if kind == "artifact-raw":
                name = rng.choice(sorted(p.name for p in art.iterdir()))
                (art / name).write_bytes(mutate_bytes((art / name).read_bytes(), rng))
                return _run_artifact(art, feeds), f"raw edit of {name}"
            if kind == "artifact-resealed":
                desc = _mutate_resealed(art, rng)
                return _run_artifact(art, feeds), desc
            if kind == "inputs":
                bad, desc = _bad_feeds(feeds, rng, nrng)
                return _run_artifact(art, bad), desc
        except SparsecError as e:
            return "error", str(e)
    raise ValueError(f"unknown fuzz kind {kind!r}")


def _model_case(fx: Fixtures, work: Path, rng: random.Random) -> tuple[str, str]:
    from sparsec.compiler import compile_model
    from sparsec.options import CompileOptions

    src = work / "m.onnx"
    if rng.random() < 0.3:
        src.write_bytes(mutate_bytes(fx.model.read_bytes(), rng))
        desc = "byte edit"
    else:
        model = onnx.load(str(fx.model))
        desc = "; ".join(mutate_source_model(model, rng) for _ in range(rng.randint(1, 2)))
        src.write_bytes(model.SerializeToString())
    fmt = rng.choice(["auto", "csr", "bsr:4x4", "nm:2:4", "dense"])
    try:
        compile_model(src, work / "m.sparsec", CompileOptions(format=fmt), dims={"batch": 2, "seq": 3})
    except SparsecError as e:
        if "internal error" in str(e):
            raise AssertionError(str(e)) from None  # a bug dressed as an error
        assert not (work / "m.sparsec").exists(), "failed compile left an artifact"
        return "error", f"{desc}: {e}"
    return "ok", f"{desc}: compiled as {fmt}"


def _mutate_resealed(art: Path, rng: random.Random) -> str:
    path = art / MODEL
    if rng.random() < 0.3:
        path.write_bytes(mutate_bytes(path.read_bytes(), rng))
        desc = "byte edit of model.onnx"
    else:
        model = onnx.load(str(path))
        desc = mutate_model(model, rng)
        onnx.save(model, str(path))
    _reseal(art, MODEL)
    return desc + " (resealed)"


def _bad_feeds(
    feeds: dict[str, np.ndarray], rng: random.Random, nrng: np.random.Generator
) -> tuple[dict[str, Any], str]:
    x = feeds["x"]
    how = rng.randrange(6)
    if how == 0:
        return {"x": x[..., :-1].copy()}, "last dim too short"
    if how == 1:
        return {"x": x.reshape(-1, 16)[None, None]}, "rank 4"
    if how == 2:
        return {"x": x.astype(rng.choice([np.float64, np.int64, np.float16]))}, "wrong dtype"
    if how == 3:
        return {"x": np.zeros((0, x.shape[1], 16), np.float32)}, "zero rows"
    if how == 4:
        return {"x": x, "extra": x}, "extra input"
    return {"x": np.asfortranarray(nrng.standard_normal((x.shape[0], x.shape[1], 16)).astype(np.float32))}, (
        "non-contiguous input"
    )
