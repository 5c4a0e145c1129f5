"""The wasm target's structure: registry, artifact files and hashes, kernels.wasm really uses SIMD128, the JS module
exports ``load``, the plan splits the graph into onnxruntime-web segments and sparse steps, refusals are one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import onnx
import pytest

from sparsec.artifact import read_manifest, sha256_file
from sparsec.compiler import compile_model
from sparsec.errors import SparsecError
from sparsec.options import CompileOptions
from sparsec.targets.registry import get_target, known_targets
from sparsec.targets.wasm.plan import make_plan
from sparsec.targets.wasm.target import ENTRY, ORT_FILES
from tests.targets.wasm_helpers import MODELS, compile_wasm, for_format, needs_wasm


def test_registry_knows_wasm() -> None:
    assert "wasm" in known_targets()
    t = get_target("wasm")
    assert t.library_name == "kernels.wasm"
    assert t.describe()["llvm_target"] == {
        "kind": "llvm",
        "mtriple": "wasm32-unknown-unknown-wasm",
        "mattr": ["+simd128"],
    }
    assert all(t.supports(f) for f in ("csr", "bsr:4x4", "bsr:16x1", "nm:2:4")) and not t.supports("dense")
    with pytest.raises(SparsecError, match="--cpu applies to --target arm only"):
        get_target("wasm", "cortex-a76")


def test_tune_is_refused_in_one_line(tmp_path: Path) -> None:
    onnx.save(MODELS["mlp"](), str(tmp_path / "m.onnx"))
    with pytest.raises(SparsecError, match="--tune is not available for --target wasm"):
        compile_model(tmp_path / "m.onnx", tmp_path / "m.sparsec", CompileOptions(target="wasm", tune=True))
    assert not (tmp_path / "m.sparsec").exists()


def test_plan_groups_dense_nodes_between_sparse_steps(tmp_path: Path) -> None:
    """FFN: fc1 (gelu) and fc2 (+ residual) are sparse steps, the dense Reshape before the sparse head is one
    onnxruntime-web segment; every segment is a valid ONNX model without sparsec nodes; weights are aligned."""
    from sparsec.frontend import load_model
    from sparsec.pipeline import compile_graph

    onnx.save(MODELS["ffn"](), str(tmp_path / "m.onnx"))
    opts = CompileOptions(target="wasm", format="csr")
    rewritten, _ = compile_graph(load_model(tmp_path / "m.onnx"), get_target("wasm"), opts)
    plan = make_plan(rewritten)
    kinds = [s["kind"] for s in plan.steps]
    assert kinds.count("sparse") == 3 and kinds.count("dense") == len(plan.segments)
    assert all(a != b or a == "sparse" for a, b in zip(kinds, kinds[1:], strict=False))  # dense runs are merged
    for seg in plan.segments.values():
        onnx.checker.check_model(seg)
        assert all(n.domain != "com.microsoft" for n in seg.graph.node)
    offsets = sorted((w["offset"], w["nbytes"]) for w in plan.weights.values())
    assert all(o % 64 == 0 for o, _ in offsets) and all(
        a + n <= b for (a, n), (b, _) in zip(offsets, offsets[1:], strict=False)
    )


@needs_wasm
def test_artifact_files_hashed_and_kernels_use_simd(tmp_path: Path) -> None:
    art = compile_wasm(for_format(MODELS["mlp"](), "bsr:4x4"), tmp_path, "bsr:4x4", verify=False)
    manifest = read_manifest(art)
    files = set(manifest["files"])
    expected = {"model.onnx", "kernels.wasm", "plan.json", "weights.bin", ENTRY, *ORT_FILES}
    assert expected <= files and files == {p.name for p in art.iterdir()} - {"manifest.json"}
    assert all(sha256_file(art / f) == d for f, d in manifest["files"].items())
    assert manifest["target"]["name"] == "wasm" and manifest["kernel_library"] == "kernels.wasm"
    wasm = (art / "kernels.wasm").read_bytes()
    assert wasm[:4] == b"\0asm"
    text = subprocess.run(["wasm-dis", str(art / "kernels.wasm")], capture_output=True, text=True, check=True).stdout
    assert text.count("f32x4.mul") + text.count("f32x4.add") > 10  # SIMD128 arithmetic in the kernels
    assert "__tvm_ffi_sparsec_k0" in text and "__tvm_ffi_sparsec_k1" in text
    probe = f"import('{(art / ENTRY).as_uri()}').then(m => console.log(typeof m.load))"
    out = subprocess.run(["node", "--input-type=module", "-e", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "function"
    plan = json.loads((art / "plan.json").read_text())
    assert [s["kind"] for s in plan["steps"]] == ["sparse", "sparse"]


@needs_wasm
def test_two_compiles_are_byte_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same model and options -> the same bytes in every file (kernels.wasm really rebuilt and relinked)."""
    monkeypatch.setenv("SPARSEC_CACHE", "off")
    onnx.save(MODELS["ffn"](), str(tmp_path / "m.onnx"))
    opts = CompileOptions(target="wasm", format="csr", verify=False)
    a = compile_model(tmp_path / "m.onnx", tmp_path / "a.sparsec", opts).artifact
    b = compile_model(tmp_path / "m.onnx", tmp_path / "sub" / "b.sparsec", opts).artifact
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()) and "kernels.wasm" in names
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs between two compiles"
    assert str(tmp_path) not in (a / "manifest.json").read_text() + (a / "plan.json").read_text()


KERNEL_ERROR_JS = """
import { readFile } from 'node:fs/promises';
const bytes = await readFile(process.argv[1]);
const imports = { env: { emscripten_notify_memory_growth: () => {} } };
const x = (await WebAssembly.instantiate(bytes, imports)).instance.exports;
x._initialize?.();
const p = x.sc_alloc(1 << 16);
const desc = new Int32Array(8 * 6);
desc.set([p, 2, 2, 32, 2, 47, 0, 0], 0);  // X f32[2, 47]: the kernel's K is 48
for (let i = 1; i < 6; i++) desc.set([p, 1, 2, 32, 4, 0, 0, 0], i * 8);
const dp = x.sc_alloc(desc.byteLength);
new Int32Array(x.memory.buffer, dp, desc.length).set(desc);
const rc = x.__tvm_ffi_sparsec_k0(0, x.sc_pack(6, dp), 6, x.sc_result());
const mem = new Uint8Array(x.memory.buffer);
let s = '', q = x.sc_last_error();
while (mem[q]) s += String.fromCharCode(mem[q++]);
console.log(JSON.stringify({ rc, error: s, bad_pack: x.sc_pack(17, dp) }));
"""


@needs_wasm
def test_kernel_argument_errors_come_back_as_text(tmp_path: Path) -> None:
    """Below sparsec.mjs's own checks: a kernel called with wrong arguments returns an error code and the driver
    keeps TVM's message (no trap, no out-of-bounds access); sc_pack refuses more arguments than it holds."""
    art = compile_wasm(MODELS["ffn"](), tmp_path, "csr", verify=False)
    cmd = ["node", "--input-type=module", "-e", KERNEL_ERROR_JS, str(art / "kernels.wasm")]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    assert out["rc"] != 0 and "sparsec_k0" in out["error"] and out["bad_pack"] == 0


def constant_between_sparse_steps() -> onnx.ModelProto:
    """x -> Mul(c) -> sparse fc1 -> Mul(c) -> sparse fc2, ``c`` one Constant node read by both dense segments."""
    import numpy as np
    from onnx import helper, numpy_helper

    from models.synthetic import sparse_matrix
    from tests.passes.graphs import model

    rng = np.random.default_rng(4)
    c = numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "c_value")
    nodes = [
        helper.make_node("Constant", [], ["c"], value=c),
        helper.make_node("Mul", ["x", "c"], ["a"]),
        helper.make_node("MatMul", ["a", "w1"], ["h"], name="fc1"),
        helper.make_node("Mul", ["h", "c"], ["b"]),
        helper.make_node("MatMul", ["b", "w2"], ["y"], name="fc2"),
    ]
    weights = {"w1": sparse_matrix(rng, (32, 32), 0.2), "w2": sparse_matrix(rng, (32, 16), 0.2)}
    return model(nodes, weights, {"x": ["batch", 32]}, {"y": ["batch", 16]})


def test_constant_nodes_are_copied_into_segments_not_passed(tmp_path: Path) -> None:
    """A Constant node's value read by two segments is computed in each (a tensor crossing a segment boundary is
    copied out of onnxruntime-web and back in), never a segment output or input."""
    from sparsec.frontend import load_model
    from sparsec.pipeline import compile_graph

    onnx.save(constant_between_sparse_steps(), str(tmp_path / "m.onnx"))
    rewritten, _ = compile_graph(load_model(tmp_path / "m.onnx"), get_target("wasm"), CompileOptions(target="wasm"))
    plan = make_plan(rewritten)
    assert [s["kind"] for s in plan.steps] == ["dense", "sparse", "dense", "sparse"]
    dense = [s for s in plan.steps if s["kind"] == "dense"]
    assert [s["inputs"] for s in dense] == [["x"], ["h"]] and [s["outputs"] for s in dense] == [["a"], ["b"]]
    for seg in plan.segments.values():
        assert [n.op_type for n in seg.graph.node] == ["Constant", "Mul"]


@needs_wasm
def test_constant_copied_into_segments_runs_as_ort(tmp_path: Path) -> None:
    art = compile_wasm(constant_between_sparse_steps(), tmp_path, "csr")  # verified in node against ORT
    assert len(json.loads((art / "plan.json").read_text())["steps"]) == 4
