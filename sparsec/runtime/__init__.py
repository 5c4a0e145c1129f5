"""Run a sparsec artifact: an ``onnxruntime.InferenceSession`` with the sparsec plugin EP registered.

The artifact is verified (sha256 of every file, versions) and its target asked whether this host runs it in-process
before ORT sees any of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import SparsecError
from .session import EP_NAME, default_session_options, ep_library, tvm_runtime_library

__all__ = ["EP_NAME", "InferenceSession", "default_session_options", "ep_library", "tvm_runtime_library"]


def InferenceSession(artifact: str | Path, sess_options: Any = None, **kwargs: Any) -> Any:  # noqa: N802
    """An ``onnxruntime.InferenceSession`` running ``artifact``'s model with the sparsec EP.

    Sparse layers run on the artifact's kernels through the EP; every other node on ORT's CPU EP.
    """
    from ..artifact import check_versions, read_manifest
    from ..options import toolchain_versions
    from ..targets.registry import target_of
    from .session import session_for

    d = Path(artifact)
    manifest = read_manifest(d)
    check_versions(manifest, toolchain_versions())
    why = target_of(manifest).session_problem()
    if why:
        raise SparsecError(why)
    return session_for(d, manifest, sess_options, **kwargs)
