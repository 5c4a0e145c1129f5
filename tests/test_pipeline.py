"""The compile stages: onnx-ir passes run by one PassManager, named and dumped with --dump-dir; one record per
layer extended by each stage; a stage's one-line error reaches the user as it is."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx_ir as ir
import pytest

from models.synthetic import transformer_ffn
from sparsec.compiler import compile_model
from sparsec.errors import SparsecError
from sparsec.options import CompileOptions
from sparsec.pipeline import STAGES, compile_graph, stages
from sparsec.targets.registry import get_target


def test_stages_are_named_onnx_ir_passes() -> None:
    from sparsec.passes.state import Compilation

    model = transformer_ffn(density=0.1)
    manager = stages(Compilation(get_target("x86"), CompileOptions(), source=model))
    assert isinstance(manager, ir.passes.PassManager)
    assert [repr(p) for p in manager.passes] == [f"Stage({i}-{name})" for i, name in enumerate(STAGES)]
    assert all(isinstance(p.inner, ir.passes.PassBase) for p in manager.passes)  # type: ignore[attr-defined]
    assert len(stages(Compilation(get_target("x86"), CompileOptions(), source=model), until="select").passes) == 3


def test_dump_dir_holds_the_model_after_each_stage(tmp_path: Path) -> None:
    src = tmp_path / "ffn.onnx"
    onnx.save(transformer_ffn(density=0.1), str(src))
    dump = tmp_path / "dump"
    compile_model(src, tmp_path / "ffn.sparsec", CompileOptions(format="csr", verify=False), dump_dir=dump)
    files = sorted(p.name for p in dump.iterdir())
    assert files == [f"{i}-{name}.onnx" for i, name in enumerate(STAGES)]
    after = {name: onnx.load(str(dump / f"{i}-{name}.onnx")) for i, name in enumerate(STAGES)}
    for m in after.values():
        onnx.checker.check_model(m)
    annotated = [n for n in after["select"].graph.node if any(p.key == "sparsec.format" for p in n.metadata_props)]
    assert [n.name for n in annotated] == ["fc1", "fc2", "head"]  # select annotates, rewrites nothing
    assert not any(n.op_type == "EPContext" for n in after["select"].graph.node)
    assert sum(n.op_type == "EPContext" for n in after["rewrite"].graph.node) == 3
    assert len(after["fuse"].graph.node) < len(after["rewrite"].graph.node)  # epilogues went into the kernels
    final = onnx.load(str(tmp_path / "ffn.sparsec" / "model.onnx"))
    assert final.SerializeToString() == after["partition"].SerializeToString()


def test_records_are_extended_stage_by_stage() -> None:
    model = onnx.shape_inference.infer_shapes(transformer_ffn(density=0.1))
    target, options = get_target("x86"), CompileOptions(format="csr", verify=False)
    _, selected = compile_graph(model, target, options, until="select")
    assert all(la.choice is not None and la.kernel is None for la in selected)
    _, rewritten = compile_graph(model, target, options, until="rewrite")
    assert all(la.kernel is not None and not la.kernel.epilogue.steps for la in rewritten)
    _, fused = compile_graph(model, target, options)
    steps = {la.name: la.kernel.epilogue.steps for la in fused if la.kernel is not None}
    assert steps["fc1"] and all(s for s in steps.values()), steps
    assert [la.name for la in fused] == [la.name for la in selected]  # one record per layer throughout


def test_a_stage_error_reaches_the_user_unwrapped(tmp_path: Path) -> None:
    """The PassManager wraps exceptions in PassError; the user still sees sparsec's one line."""
    model = onnx.shape_inference.infer_shapes(transformer_ffn(density=0.1))
    with pytest.raises(SparsecError, match=r"^--format bsr:9x1: no wasm kernel for this format$"):
        compile_graph(model, get_target("wasm"), CompileOptions(target="wasm", format="bsr:9x1"))
