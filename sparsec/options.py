"""Compile options: a frozen dataclass whose hash (with toolchain versions) keys caches and goes into the manifest."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field

from .errors import SparsecError

_FORMAT = re.compile(r"^(auto|dense|csr|bsr:\d+x\d+|nm:\d+:\d+|int8:1x4)$")


@dataclass(frozen=True)
class CompileOptions:
    """Everything that changes what ``sparsec compile`` produces."""

    target: str = "x86"
    format: str = "auto"
    verify: bool | None = None  # None: verify when this host can run the target's code, else say it was skipped
    cpu: str = ""  # --cpu NAME (arm: LLVM mcpu); "" = the target's default
    arch: str = ""  # --arch sm_XX (cuda); "" = the target's default (sm_80)
    tune: bool = False  # measure candidate formats and variants per layer on this host (passes/tune.py)
    representative_m: int = 128  # rows of the activation the cost model ranks formats at, when nothing says more
    dims: dict[str, int] = field(default_factory=dict)  # --dim NAME=N: symbolic dims for selection, tuning, verify
    input_shapes: dict[str, list[int]] = field(default_factory=dict)  # --input-shape NAME=D0,D1,..: fixed shapes
    seed: int = 0
    versions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _FORMAT.match(self.format):
            raise SparsecError(f"bad --format {self.format!r}: expected auto, dense, csr, bsr:RxC, nm:N:M or int8:1x4")
        if self.format != "auto":
            from .formats import get_format

            try:
                get_format(self.format)
            except ValueError as e:
                raise SparsecError(f"bad --format {self.format!r}: {e}") from None

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def digest(self) -> str:
        """A stable hash of the options (sorted JSON), versions included."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]


_DISTS = {"tvm": "apache-tvm", "tvm_ffi": "apache-tvm-ffi", "onnxruntime": "onnxruntime", "onnx": "onnx"}


def toolchain_versions() -> dict[str, str]:
    """Versions of everything that shapes the artifact, read from package metadata (no slow imports)."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    out = {"sparsec": __version__}
    for key, dist in _DISTS.items():
        try:
            out[key] = version(dist)
        except PackageNotFoundError:
            out[key] = "missing"
    return out
