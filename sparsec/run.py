"""``sparsec run``: feed .npy inputs to an artifact and collect its outputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SparsecError, ort_message


def load_inputs(specs: tuple[str, ...] | list[str]) -> dict[str, np.ndarray]:
    """Parse NAME=FILE.npy pairs (no pickles)."""
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise SparsecError(f"bad --input {spec!r}: expected NAME=FILE.npy")
        try:
            feeds[name] = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise SparsecError(f"--input {name}: cannot read {file} ({str(e).splitlines()[0]})") from None
    return feeds


def _check_against_manifest(feeds: dict[str, np.ndarray], declared: list[dict[str, Any]]) -> None:
    expected = {i["name"]: i["shape"] for i in declared}
    missing = sorted(set(expected) - set(feeds))
    unknown = sorted(set(feeds) - set(expected))
    if missing or unknown:
        raise SparsecError(f"inputs do not match the model: missing {missing}, unknown {unknown}")
    for name, shape in expected.items():
        a = feeds[name]
        if len(shape) != a.ndim or any(isinstance(d, int) and d != s for d, s in zip(shape, a.shape, strict=True)):
            raise SparsecError(f"input {name!r}: shape {list(a.shape)} does not match {shape}")


def random_inputs(
    artifact: str | Path,
    names: list[str],
    input_shapes: dict[str, list[int]],
    dims: dict[str, int],
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Seeded random values for the artifact's inputs ``names`` (as ``--verify`` draws them): ``input_shapes`` fixes
    an input's whole shape, ``dims`` sizes symbolic dims (default: the ``--dim`` values the artifact was compiled
    with); a symbolic dim left unsized is a one-line error naming it and both flags."""
    import onnx

    from .artifact import read_manifest
    from .verify import random_feeds

    manifest = read_manifest(artifact)
    sizes = {**manifest.get("options", {}).get("dims", {}), **dims}
    model = onnx.load(str(Path(artifact) / "model.onnx"), load_external_data=False)
    del model.graph.initializer[:]  # only the inputs' types and shapes are read
    keep = [i for i in model.graph.input if i.name in names]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    for vi in model.graph.input:
        dims_ = vi.type.tensor_type.shape.dim
        shape = input_shapes.get(vi.name)
        if shape is not None:
            if len(shape) != len(dims_) or any(
                d.HasField("dim_value") and d.dim_value != n for d, n in zip(dims_, shape, strict=True)
            ):
                raise SparsecError(
                    f"--input-shape {vi.name}={','.join(map(str, shape))}: the artifact takes {_text(dims_)}"
                )
            for d, n in zip(dims_, shape, strict=True):
                d.dim_value = n
        unset = [
            d.dim_param or f"{vi.name}[{i}]"
            for i, d in enumerate(dims_)
            if not d.HasField("dim_value") and (d.dim_param or f"{vi.name}[{i}]") not in sizes
        ]
        if unset:
            raise SparsecError(
                f"input {vi.name!r} {_text(dims_)} has no --input file and symbolic dims {', '.join(unset)}: give "
                f"--input-shape {vi.name}=D0,D1,... or --dim NAME=N"
            )
    return random_feeds(model, sizes, seed=seed)


def _text(dims: Any) -> str:
    return "[" + ", ".join(str(d.dim_value) if d.HasField("dim_value") else d.dim_param or "?" for d in dims) + "]"


def run_artifact(
    artifact: str | Path,
    inputs: tuple[str, ...] | list[str],
    input_shapes: dict[str, list[int]] | None = None,
    dims: dict[str, int] | None = None,
    seed: int = 0,
    say: Callable[[str], None] = lambda msg: None,
) -> dict[str, np.ndarray]:
    """Load the artifact (verified first), read NAME=FILE.npy inputs, draw seeded random values for the other inputs
    (``input_shapes`` / ``dims`` size them; ``say`` reports which), check them, run; outputs by name.

    The artifact's target runs it: x86 (and cuda) in this process (ORT + the sparsec EP), arm in the example app
    under qemu-aarch64, wasm in node."""
    from .artifact import check_versions, read_manifest
    from .options import toolchain_versions
    from .targets.registry import target_of

    input_shapes = input_shapes or {}
    manifest = read_manifest(artifact)
    check_versions(manifest, toolchain_versions())
    target = target_of(manifest)
    why = target.cannot_run()
    if why:
        raise SparsecError(f"artifact targets {target.name!r}; cannot run it on this host: {why}")
    declared = manifest.get("inputs", [])
    unknown = sorted(set(input_shapes) - {i["name"] for i in declared})
    if unknown:
        raise SparsecError(
            f"--input-shape names no input of the artifact: {unknown} (it takes {[i['name'] for i in declared]})"
        )
    feeds = load_inputs(inputs)
    taken = [i["name"] for i in declared]
    if set(feeds) - set(taken):
        raise SparsecError(
            f"--input names no input of the artifact: {sorted(set(feeds) - set(taken))} (it takes {taken})"
        )
    for name, shape in input_shapes.items():
        if name in feeds and list(feeds[name].shape) != shape:
            raise SparsecError(
                f"input {name!r}: the file has shape {list(feeds[name].shape)}, --input-shape says {shape}"
            )
    missing = [i["name"] for i in declared if i["name"] not in feeds]
    if missing:
        drawn = random_inputs(artifact, missing, input_shapes, dims or {}, seed)
        say(f"random inputs (seed {seed}): " + ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in drawn.items()))
        feeds.update(drawn)
    _check_against_manifest(feeds, declared)
    try:
        outs = target.run_artifact(Path(artifact), feeds)
    except SparsecError:
        raise
    except Exception as e:
        raise SparsecError(f"run failed: {ort_message(e)}") from None
    return {o["name"]: v for o, v in zip(manifest.get("outputs", []), outs, strict=True)}
