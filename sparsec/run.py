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


def run_artifact(artifact: str | Path, inputs: tuple[str, ...] | list[str]) -> dict[str, np.ndarray]:
    """Load the artifact (verified first), read NAME=FILE.npy inputs, check them, run; outputs by name."""
    from .runtime import InferenceSession

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
