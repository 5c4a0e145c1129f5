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


def _run_elsewhere(artifact: Path, manifest: dict[str, Any], inputs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """An artifact for another target (e.g. arm): run by that target's runner on this host (arm: qemu)."""
    from .artifact import check_versions
    from .options import toolchain_versions
    from .targets.base import get_target

    check_versions(manifest, toolchain_versions())
    info = manifest["target"]
    cpu = info.get("cpu", "")
    target = get_target(info["name"], "" if cpu == "generic" else cpu)
    why = target.cannot_run()
    if why:
        raise SparsecError(f"artifact targets {info['name']!r}; cannot run it on this host: {why}")
    feeds = load_inputs(inputs)
    _check_against_manifest(feeds, manifest.get("inputs", []))
    outs = target.run_artifact(artifact, feeds)
    return {o["name"]: v for o, v in zip(manifest.get("outputs", []), outs, strict=True)}


def run_artifact(artifact: str | Path, inputs: tuple[str, ...] | list[str]) -> dict[str, np.ndarray]:
    """Load the artifact (verified first), read NAME=FILE.npy inputs, check them, run; outputs by name.

    x86 artifacts run in this process (ORT + the sparsec EP); others through their target's runner (arm: the example
    app under qemu-aarch64)."""
    from .artifact import read_manifest
    from .runtime import InferenceSession

    manifest = read_manifest(artifact)
    if manifest.get("target", {}).get("name", "x86") != "x86":
        return _run_elsewhere(Path(artifact), manifest, inputs)

    sess: Any = InferenceSession(artifact)
    feeds = load_inputs(inputs)
    expected = {i.name: i for i in sess.get_inputs()}
    missing = sorted(set(expected) - set(feeds))
    unknown = sorted(set(feeds) - set(expected))
    if missing or unknown:
        raise SparsecError(f"inputs do not match the model: missing {missing}, unknown {unknown}")
    for name, arg in expected.items():
        a = feeds[name]
        fixed_ok = len(arg.shape) == a.ndim and all(
            not isinstance(d, int) or d == s for d, s in zip(arg.shape, a.shape, strict=True)
        )
        if not fixed_ok:
            raise SparsecError(f"input {name!r}: shape {list(a.shape)} does not match {arg.shape}")
    try:
        outs = sess.run(None, feeds)
    except Exception as e:
        raise SparsecError(f"run failed: {ort_message(e)}") from None
    return {o.name: v for o, v in zip(sess.get_outputs(), outs, strict=True)}
