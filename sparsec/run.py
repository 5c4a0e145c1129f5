"""``sparsec run``: feed .npy inputs to an artifact and collect its outputs."""

from __future__ import annotations

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


def run_artifact(artifact: str | Path, inputs: tuple[str, ...] | list[str]) -> dict[str, np.ndarray]:
    """Load the artifact (verified first), read NAME=FILE.npy inputs, check them, run; outputs by name.

    The artifact's target runs it: x86 (and cuda) in this process (ORT + the sparsec EP), arm in the example app
    under qemu-aarch64, wasm in node."""
    from .artifact import check_versions, read_manifest
    from .options import toolchain_versions
    from .targets.registry import target_of

    manifest = read_manifest(artifact)
    check_versions(manifest, toolchain_versions())
    target = target_of(manifest)
    why = target.cannot_run()
    if why:
        raise SparsecError(f"artifact targets {target.name!r}; cannot run it on this host: {why}")
    feeds = load_inputs(inputs)
    _check_against_manifest(feeds, manifest.get("inputs", []))
    try:
        outs = target.run_artifact(Path(artifact), feeds)
    except SparsecError:
        raise
    except Exception as e:
        raise SparsecError(f"run failed: {ort_message(e)}") from None
    return {o["name"]: v for o, v in zip(manifest.get("outputs", []), outs, strict=True)}
