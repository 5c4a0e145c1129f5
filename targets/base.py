"""The target contract: every hook a code-generation target provides, each with a default.

A target turns a model's ``Kernel`` records into one kernel library, says what else its artifact carries, and
says how its artifacts run (here, for verification and ``sparsec run``; in an ORT session, ``sparsec.runtime``).
The registry (``targets/registry.py``) is the one place that maps target names to classes; nothing else tests a
target's name. Importing this module stays cheap (no TVM): ``sparsec --help`` and option checks use it.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sparsec.errors import SparsecError
from sparsec.layer import Kernel

Progress = Callable[[str], None]


def quiet(_msg: str) -> None:
    """A progress callback that says nothing."""


def non_tensor_value(model: Any, outputs: bool = True) -> str:
    """'output 'NAME' (a sequence)' for the first graph input (or output, with ``outputs``) that is not a tensor,
    else ""."""
    groups = [("input", model.graph.input)] + ([("output", model.graph.output)] if outputs else [])
    for kind, values in groups:
        for v in values:
            what = v.type.WhichOneof("value")
            if what not in (None, "tensor_type"):
                return f"{kind} {v.name!r} (a {what.removesuffix('_type')})"
    return ""


def on_x86_host() -> bool:
    return platform.machine() in ("x86_64", "AMD64")


class Target:
    """A code-generation target. Subclasses set the class attributes and implement ``describe``, ``supports`` and
    ``build``; every other hook has a default that fits a target whose artifacts run in ORT with the sparsec EP."""

    name: ClassVar[str]
    library_name: ClassVar[str] = "kernels.so"  # the kernel library's file name inside the artifact
    side_files: ClassVar[tuple[str, ...]] = ()  # files ``build`` writes beside the library (cached with it)
    sparse_conv: ClassVar[bool] = False  # has kernels for Conv layers (else convs stay on ORT)
    runner_hint: ClassVar[str] = ""  # where its artifacts run when not in this process (refusal messages)
    isa: str = "generic"  # the cost model's table (passes/cost_data/<name>.json)
    int8_dot: bool = False  # the CPU has int8 dot products ORT's int8 MatMul uses (VNNI): the cost model ranks by it
    fuses_quantization: ClassVar[bool] = False  # its epilogues compute a QDQ model's Quantize/DequantizeLinear pairs
    # The ORT build that runs the artifact's other ops where it is not the x86 one verification compares with
    # ("ORT for aarch64"): its float ops round in their own way, which a quantizer after them can make a whole step.
    foreign_ort: ClassVar[str] = ""

    @classmethod
    def from_options(cls, cpu: str = "", arch: str = "") -> Target:
        """The target for ``--cpu`` / ``--arch`` ("" = default); a flag the target does not take is an error."""
        if arch:
            raise SparsecError("--arch applies to --target cuda only")
        if cpu:
            raise SparsecError(f"--cpu applies to --target arm only ({cls.name} builds for {cls.cpu_note()})")
        return cls()

    @classmethod
    def cpu_note(cls) -> str:
        return "its own CPU"

    @classmethod
    def from_manifest(cls, info: dict[str, Any]) -> Target:
        """The target an artifact was built for, from its manifest's ``target`` entry."""
        return cls()

    def cannot_take(self, model: Any) -> str:
        """Why this target cannot compile ``model`` (an onnx.ModelProto) at all, checked before any work; "" when
        it can. Default: it can (its artifacts run in ORT, which takes any value ORT takes)."""
        return ""

    # --- what it generates -------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """JSON-able facts for the manifest: kind, cpu, ISA features, vector width, TVM target JSON."""
        raise NotImplementedError

    def supports(self, fmt: str) -> bool:
        """Whether this target has a kernel template for the format name (e.g. ``bsr:16x1``)."""
        raise NotImplementedError

    def unsupported_note(self, fmt: str) -> str:
        """What a format this target lacks would need (" (needs ...)"), for the error of a forced one; "" when
        nothing would help."""
        return ""

    def variants(self, fmt: str) -> list[str]:
        """The kernel variants (schedules) of the format, default first (``--tune`` times them)."""
        return [""] if self.supports(fmt) else []

    def build(self, kernels: list[Kernel], out_path: Path, progress: Progress = quiet) -> None:
        """Generate every kernel into ONE library at ``out_path`` (deterministic for equal kernels)."""
        raise NotImplementedError

    def bundle(self, folder: Path, progress: Progress = quiet) -> None:
        """Put the runtime files an app needs besides model.onnx and the kernels into the artifact ``folder``
        (called after model.onnx is written: a bundle may derive files from it). Default: none."""

    def tolerance(self, kernels: list[Kernel]) -> float | None:
        """The verification tolerance when a lossy kernel was asked for; None: ``verify.TOLERANCE``."""
        return None

    # --- where it runs -----------------------------------------------------------------------------------------
    def cannot_run(self) -> str:
        """Why this host cannot run the target's artifacts (verification, ``sparsec run``); "" when it can."""
        return self.session_problem()

    def cannot_tune(self) -> str:
        """Why ``--tune`` (which times kernels on this host) is not available for this target; "" when it is."""
        return ""

    def session_problem(self) -> str:
        """Why this host cannot load the target's artifacts in an in-process ORT session; "" when it can."""
        hint = f" ({self.runner_hint})" if self.runner_hint else ""
        return (
            f"artifact targets {self.name!r}; this host ({platform.machine()}) runs x86 artifacts only in-process{hint}"
        )

    def run_artifact(self, artifact: Path, feeds: dict[str, np.ndarray]) -> list[Any]:
        """The artifact's outputs (in model order; sequences and maps as lists and dicts) on ``feeds``, run on this
        host. Default: an ORT session with the sparsec EP in this process."""
        from sparsec.runtime.session import open_session

        return list(open_session(artifact).run(None, feeds))
