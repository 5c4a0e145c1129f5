"""int8:1x4 on WebAssembly (issue 16): integer layers on ``i32x4.dot_i16x8_s`` kernels (the int8 template of
targets/simd/templates/int8.py with the activation's bytes widened to int16 pairs in its transpose), run in node.

Structural: the format on every wasm build, the widening template, the plan's uint8 X and run-time zero point and
scale. Numeric, in node: every density, odd K and N, batches below, at and above the token tile, against int64
numpy bit for bit; the scale, bias and Relu epilogue against the same sums; compile's own verification.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest

from sparsec.compiler import compile_model
from sparsec.options import CompileOptions
from sparsec.targets.registry import get_target
from tests.targets.test_arm_int8 import (
    LAYERS,
    assert_epilogue_exact,
    assert_layers_exact,
    block_model,
    epilogue_model,
    layers_model,
)
from tests.targets.wasm_helpers import needs_wasm


def _compile(tmp_path: Path, model: onnx.ModelProto, **options: object) -> Path:
    src = tmp_path / "m.onnx"
    onnx.save(model, str(src))
    opts = CompileOptions(target="wasm", format="int8:1x4", **options)  # type: ignore[arg-type]
    return compile_model(src, tmp_path / "m.sparsec", opts).artifact


def test_every_wasm_build_has_int8_kernels() -> None:
    t = get_target("wasm")
    assert t.supports("int8:1x4") and t.variants("int8:1x4") == ["dot16"]


def test_template_widens_the_activation_to_int16_pairs() -> None:
    """The TIR of the wasm instantiation: i32x4.dot_i16x8_s (``llvm.wasm.dot``) on int16x8 operands, two per block,
    XT with two rows per word; no byte flip (the activation stays unsigned, widened)."""
    from sparsec.formats import get_format
    from sparsec.layer import Kernel
    from sparsec.targets.simd.instantiate import build_module

    f = get_format("int8:1x4")
    w = f.random(40, 96, 0.2, np.random.default_rng(0))
    packed = f.pack(w)
    spec = Kernel("k", "int8:1x4", 96, 40, tuple(f.array_specs(packed)), packed=packed)
    t = get_target("wasm")
    text = build_module([spec], t.vector_width, t.table, t.acc_registers).script()
    assert "llvm.wasm.dot" in text and "int16x8" in text and "-2139062144" not in text
    assert text.count("llvm.wasm.dot") % 2 == 0 and "(48, 32)" in text  # 24 words of 96 bytes -> 48 rows of XT


@needs_wasm
def test_dot_kernels_equal_int64_numpy(tmp_path: Path) -> None:
    """Every layer, batch 1 (one token), 3, 17 (tiles of 4 vectors, the last one partly past M), 32 (one tile of 8
    vectors) and 70, symbolic batch, the zero point a graph input (a run-time kernel argument): bit for bit the
    int64 sums (zero points 0, 128 and 255 included)."""
    from sparsec.targets.wasm.node_runner import run_in_node

    model, weights = layers_model()
    art = _compile(tmp_path, model, verify=False)
    text = subprocess.run(["wasm-dis", str(art / "kernels.wasm")], capture_output=True, text=True, check=True).stdout
    assert text.count("i32x4.dot_i16x8_s") >= 2 * len(LAYERS)
    steps = [s for s in json.loads((art / "plan.json").read_text())["steps"] if s["kind"] == "sparse"]
    assert [(s["x_dtype"], s["runtime_args"]) for s in steps] == [("uint8", {f"z{i}": "uint8"}) for i in range(5)]
    assert_layers_exact(lambda feeds: run_in_node(art, feeds), weights)


@needs_wasm
def test_scale_bias_relu_epilogue_and_verification(tmp_path: Path) -> None:
    """quantize_dynamic's layer: the zero point and the scale come from the DynamicQuantizeLinear at run time, the
    scale, bias and Relu run in the kernel; compile's verification (node against ORT x86) passes and the outputs
    equal the exact integer sums scaled, biased and clipped as ORT rounds them (Mul, then Add)."""
    from sparsec.targets.wasm.node_runner import run_in_node

    model = epilogue_model()
    src = tmp_path / "m.onnx"
    onnx.save(model, str(src))
    res = compile_model(src, tmp_path / "m.sparsec", CompileOptions(target="wasm", format="int8:1x4"))
    assert [la["format"] for la in res.layers] == ["int8:1x4"] and res.errors == {"y": 0.0}
    ops = [n.op_type for n in onnx.load(str(res.artifact / "model.onnx")).graph.node]
    assert "Relu" not in ops and "Add" not in ops and "MatMulInteger" not in ops  # in the kernel
    plan = json.loads((res.artifact / "plan.json").read_text())
    (step,) = [s for s in plan["steps"] if s["kind"] == "sparse"]
    assert step["runtime_args"] == {"xz": "uint8", "s": "float32"} and step["args"][-1] in plan["weights"]  # bias
    assert_epilogue_exact(model, lambda x: run_in_node(res.artifact, {"x": x})[0])


@needs_wasm
@pytest.mark.parametrize(("model", "expected"), [("blocks", "int8:1x4"), ("dense", "dense")])
def test_auto_ranks_int8_kernels_by_the_measured_table(tmp_path: Path, model: str, expected: str) -> None:
    """The wasm table's int8:1x4 row and onnxruntime-web's int8 speed (benchmarks/wasm_calibrate.py --int8): auto
    picks the kernel for an int8 layer 90% sparse in 1x4 blocks at M=128, and leaves a dense int8 layer dense."""
    if model == "blocks":
        m = block_model()
    else:
        rng = np.random.default_rng(3)
        w = rng.integers(-127, 128, (384, 1536))
        w[w == 0] = 1
        from tests.targets.arm_models import dynamic_int8_layer

        m = dynamic_int8_layer(w, np.array(0.01))
    src = tmp_path / "m.onnx"
    onnx.save(m, str(src))
    res = compile_model(src, tmp_path / "m.sparsec", CompileOptions(target="wasm", dims={"batch": 128}, verify=False))
    assert [la["format"] for la in res.layers] == [expected], res.layers[0]["reason"]


@needs_wasm
def test_qdq_model_with_constant_zero_points_and_scales(tmp_path: Path) -> None:
    """A static QDQ model (``sparsec quantize``): the zero points and scales are constants, stored in weights.bin as
    the kernel's one-value buffers (a scalar initializer once made a 0-d kernel argument the driver refused)."""
    from sparsec.quantize import quantize_file
    from tests.targets.arm_models import mlp

    onnx.save(mlp(), str(tmp_path / "f.onnx"))
    quantize_file(tmp_path / "f.onnx", tmp_path / "q.onnx", mode="qdq")
    opts = CompileOptions(target="wasm", format="int8:1x4")
    res = compile_model(tmp_path / "q.onnx", tmp_path / "q.sparsec", opts)  # verified in node against ORT
    assert {la["format"] for la in res.layers} == {"int8:1x4"} and max(res.errors.values()) <= 1e-4, res.errors
    plan = json.loads((res.artifact / "plan.json").read_text())
    steps = [s for s in plan["steps"] if s["kind"] == "sparse"]
    assert steps and all(s["runtime_args"] == {} for s in steps)
    zero_points = [plan["weights"][s["args"][4]] for s in steps]  # after words, indices, indptr, sums
    assert all(z["dtype"] == "uint8" and z["shape"] == [1] for z in zero_points)
