"""The graph stages of a compile, as ``onnx_ir`` passes over one in-memory model, run by one PassManager:

    constants -> shrink -> select -> rewrite -> fuse -> partition   (docs/internals.md, "Stages")

``compile_graph`` loads the checked model into onnx-ir once, runs the stages (each one named, and written to
``dump_dir/<i>-<name>.onnx`` when asked) and returns the rewritten model with one ``Layer`` record per layer.
``until`` stops after a stage (``sparsec inspect`` stops after ``fuse``: formats, and why each epilogue was or was
not fused, without building anything).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import onnx
import onnx_ir as ir

from .layer import Layer
from .options import CompileOptions
from .targets.base import Progress, Target, quiet

if TYPE_CHECKING:
    from .passes.state import Compilation

STAGES = ("constants", "shrink", "select", "rewrite", "fuse", "partition")


class Stage(ir.passes.InPlacePass):
    """One named stage: runs its pass, then writes the model to ``dump_dir`` when one is given."""

    def __init__(self, index: int, name: str, inner: ir.passes.PassBase, dump: Path | None, state: Compilation) -> None:
        super().__init__()
        self.index, self.name, self.inner, self.dump, self.state = index, name, inner, dump, state

    def __repr__(self) -> str:
        return f"Stage({self.index}-{self.name})"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        result = self.inner(model)
        if self.dump is not None:
            from .passes.graph import to_proto

            self.dump.mkdir(parents=True, exist_ok=True)
            onnx.save(to_proto(result.model, self.state.source), str(self.dump / f"{self.index}-{self.name}.onnx"))
        return result


def stages(state: Compilation, dump_dir: Path | None = None, until: str = STAGES[-1]) -> ir.passes.PassManager:
    """The PassManager of the stages up to and including ``until``."""
    from .passes.constants import ConstantsPass
    from .passes.fuse import FusePass
    from .passes.partition import PartitionPass
    from .passes.rewrite import RewritePass
    from .passes.select import SelectPass
    from .passes.shrink import ShrinkPass

    made: dict[str, Callable[[Compilation], ir.passes.PassBase]] = {
        "constants": ConstantsPass,
        "shrink": ShrinkPass,
        "select": SelectPass,
        "rewrite": RewritePass,
        "fuse": FusePass,
        "partition": PartitionPass,
    }
    count = STAGES.index(until) + 1
    return ir.passes.PassManager(
        [Stage(i, name, made[name](state), dump_dir, state) for i, name in enumerate(STAGES[:count])]
    )


def _unwrap(e: BaseException) -> BaseException:
    """The error a stage raised, out of the PassManager's PassError wrappers."""
    while isinstance(e, ir.passes.PassError) and e.__cause__ is not None:
        e = e.__cause__
    return e


def compile_graph(
    model: onnx.ModelProto,
    target: Target,
    options: CompileOptions,
    dump_dir: str | Path | None = None,
    progress: Progress = quiet,
    until: str = STAGES[-1],
    refuse_nonfinite: bool = True,
    narrowed: dict[str, tuple[int, tuple[int, ...]]] | None = None,
) -> tuple[onnx.ModelProto, list[Layer]]:
    """The rewritten model (``model`` is not modified) and the layer records, after the stages up to ``until``;
    ``refuse_nonfinite``: a weight with NaN/Inf stops the compile after ``select`` (``inspect`` reports it);
    ``narrowed``, when given, receives the values whose channels ``shrink`` removed (passes/state.py)."""
    from .passes.graph import hide_map_types, restore_types, to_proto
    from .passes.state import Compilation

    model, hidden = hide_map_types(model)  # non-tensor values stay ORT's; onnx-ir cannot read map types
    state = Compilation(target, options, source=model, say=progress, refuse_nonfinite=refuse_nonfinite)
    manager = stages(state, Path(dump_dir) if dump_dir is not None else None, until)
    try:
        result = manager(ir.from_proto(model))
    except ir.passes.PassError as e:
        raise _unwrap(e) from None
    if narrowed is not None:
        narrowed.update(state.narrowed)
    return restore_types(to_proto(result.model, state.source), hidden), state.records()
