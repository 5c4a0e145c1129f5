"""int8:1x4 on ARM (issue 16): integer layers on ``sdot`` kernels (the int8 template of targets/simd/templates/int8.py
with 4 int32 lanes, the uint8 activation's bytes flipped to int8 and the zero point moved with them).

Structural: which --cpu gets the format (Armv8.2 dot products), the one-line error where it is missing, sdot in the
kernel library. Numeric, under qemu-aarch64 (a Cortex-A76): every density, odd K and N, batches below, at and above
the token tile, against int64 numpy bit for bit; the scale, bias and Relu epilogue against the same sums.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sparsec.compiler import compile_model
from sparsec.errors import SparsecError
from sparsec.options import CompileOptions
from sparsec.targets.registry import get_target
from tests.targets.arm_models import dynamic_int8_layer, needs_cross, needs_qemu

CPU = "cortex-a76"  # Armv8.2 with dot products; qemu emulates it
# (K, N, density): odd K (a shifted last word) and N (a shifted last row group), K below one transpose block (4 words)
LAYERS = ((13, 7, 0.5), (130, 33, 0.1), (64, 48, 0.0), (97, 40, 0.01), (40, 19, 1.0))


def layers_model(seed: int = 0) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """One MatMulInteger per LAYERS entry on its own uint8 input x{i}[batch, K] and zero point z{i}, cast to float32
    (y{i}); returns the model and the int8 weights [K, N]."""
    rng = np.random.default_rng(seed)
    nodes, inits, inputs, outputs, weights = [], [], [], [], []
    for i, (k, n, density) in enumerate(LAYERS):
        w = rng.integers(-128, 128, (k, n))
        w[rng.random((k, n)) >= density] = 0
        weights.append(w)
        inits += [numpy_helper.from_array(w.astype(np.int8), f"w{i}"), numpy_helper.from_array(np.int8(0), f"wz{i}")]
        nodes += [
            helper.make_node("MatMulInteger", [f"x{i}", f"w{i}", f"z{i}", f"wz{i}"], [f"acc{i}"], name=f"layer{i}"),
            helper.make_node("Cast", [f"acc{i}"], [f"y{i}"], to=TensorProto.FLOAT),
        ]
        inputs += [
            helper.make_tensor_value_info(f"x{i}", TensorProto.UINT8, ["batch", k]),
            helper.make_tensor_value_info(f"z{i}", TensorProto.UINT8, []),
        ]
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, ["batch", n]))
    graph = helper.make_graph(nodes, "int8_layers", inputs, outputs, inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m, weights


def epilogue_model() -> onnx.ModelProto:
    """quantize_dynamic's form: y = Relu(float(MatMulInteger(q(x), W)) * (x_scale * w_scale[N]) + b)."""
    rng = np.random.default_rng(5)
    k, n = 96, 80
    w = rng.integers(-127, 128, (k, n))
    w[rng.random((k, n)) >= 0.2] = 0
    w_scale = rng.random(n) * 0.02 + 0.001
    return dynamic_int8_layer(w, w_scale, rng.standard_normal(n), relu=True)


def _compile(tmp_path: Path, model: onnx.ModelProto, **options: object) -> Path:
    src = tmp_path / "m.onnx"
    onnx.save(model, str(src))
    opts = CompileOptions(target="arm", cpu=CPU, format="int8:1x4", **options)  # type: ignore[arg-type]
    return compile_model(src, tmp_path / "m.sparsec", opts).artifact


def test_only_cpus_with_dot_products_get_int8_kernels() -> None:
    assert not get_target("arm").supports("int8:1x4")  # generic aarch64: cores without sdot too
    assert not get_target("arm", "cortex-a53").supports("int8:1x4")  # Armv8.0
    for cpu in (CPU, "neoverse-n1", "cortex-a78"):
        t = get_target("arm", cpu)
        assert t.supports("int8:1x4") and t.int8_dot and t.variants("int8:1x4") == ["sdot"]


def test_forced_int8_without_dot_products_is_one_line(tmp_path: Path) -> None:
    model, _ = layers_model()
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(SparsecError, match=r"^--format int8:1x4: no arm kernel .*--cpu with int8 dot products") as e:
        compile_model(tmp_path / "m.onnx", tmp_path / "m.sparsec", CompileOptions(target="arm", format="int8:1x4"))
    assert "\n" not in str(e.value) and not (tmp_path / "m.sparsec").exists()


def test_sdot_template_flips_the_activation() -> None:
    """The TIR of the ARM instantiation: sdot on 4 lanes, the activation's bytes XORed with 0x80 in the transpose,
    the zero point less 128; the x86 one keeps vpdpbusd on the uint8 bytes."""
    from sparsec.formats import get_format
    from sparsec.layer import Kernel
    from sparsec.targets.simd.instantiate import build_module

    f = get_format("int8:1x4")
    w = f.random(40, 96, 0.2, np.random.default_rng(0))
    packed = f.pack(w)
    spec = Kernel("k", "int8:1x4", 96, 40, tuple(f.array_specs(packed)), packed=packed)
    arm, x86 = get_target("arm", CPU), get_target("x86")
    text = build_module([spec], arm.vector_width, arm.table, arm.acc_registers).script()
    assert "llvm.aarch64.neon.sdot" in text and "int32x4" in text and "-2139062144" in text and "- 128" in text
    text = build_module([spec], 16, x86.table, 8).script()
    assert "vpdpbusd" in text and "-2139062144" not in text


@needs_cross
def test_kernel_library_uses_sdot(tmp_path: Path) -> None:
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    if objdump is None:
        pytest.skip("aarch64-linux-gnu-objdump missing (binutils-aarch64-linux-gnu)")
    art = _compile(tmp_path, layers_model()[0], verify=False)
    asm = subprocess.run([objdump, "-d", str(art / "kernels.so")], capture_output=True, text=True).stdout
    assert asm.count("sdot\tv") >= len(LAYERS)
    layers = json.loads((art / "manifest.json").read_text())["layers"]
    assert [la["format"] for la in layers] == ["int8:1x4"] * len(LAYERS)
    assert json.loads((art / "manifest.json").read_text())["target"]["cpu"] == CPU


@needs_qemu
def test_sdot_kernels_equal_int64_numpy(tmp_path: Path) -> None:
    """Every layer, batch 1 (one token), 3, 17 (tiles of 4 vectors, the last one partly past M), 32 (one tile of 8
    vectors) and 70 (tiles split among tasks), symbolic batch: bit for bit the int64 sums (zero points 0, 128 and 255
    included)."""
    from sparsec.targets.arm.qemu import run_artifact

    model, weights = layers_model()
    art = _compile(tmp_path, model, verify=False)
    assert_layers_exact(lambda feeds: run_artifact(art, feeds, cpu=CPU), weights)


def assert_layers_exact(run: Callable[[dict[str, np.ndarray]], list[Any]], weights: list[np.ndarray]) -> None:
    """``run`` (feeds -> outputs) of a ``layers_model`` artifact at batches 1, 3, 17, 32 and 70 equals the int64 sums
    bit for bit (zero points 0, 128, 200, 255, 37)."""
    rng = np.random.default_rng(11)
    for batch, zp in ((1, 0), (3, 128), (17, 200), (32, 255), (70, 37)):
        feeds: dict[str, np.ndarray] = {}
        for i, (k, _, _) in enumerate(LAYERS):
            feeds[f"x{i}"] = rng.integers(0, 256, (batch, k)).astype(np.uint8)
            feeds[f"z{i}"] = np.array(zp, np.uint8)
        got = run(feeds)
        for i, w in enumerate(weights):
            ref = ((feeds[f"x{i}"].astype(np.int64) - zp) @ w).astype(np.float32)
            np.testing.assert_array_equal(got[i], ref, err_msg=f"layer {i} {LAYERS[i]} batch {batch}")


@needs_qemu
def test_scale_bias_relu_epilogue_and_verification(tmp_path: Path) -> None:
    """The scale, bias and Relu run in the sdot kernel; compile's own verification (qemu against ORT x86) passes and
    the outputs equal the exact integer sums scaled, biased and clipped as ORT rounds them (Mul, then Add)."""
    from sparsec.targets.arm.qemu import run_artifact

    model = epilogue_model()
    src = tmp_path / "m.onnx"
    onnx.save(model, str(src))
    res = compile_model(src, tmp_path / "m.sparsec", CompileOptions(target="arm", cpu=CPU, format="int8:1x4"))
    assert [la["format"] for la in res.layers] == ["int8:1x4"] and res.errors == {"y": 0.0}
    ops = [n.op_type for n in onnx.load(str(res.artifact / "model.onnx")).graph.node]
    assert "Relu" not in ops and "Add" not in ops and "MatMulInteger" not in ops  # in the kernel
    assert_epilogue_exact(model, lambda x: run_artifact(res.artifact, {"x": x}, cpu=CPU)[0])


def assert_epilogue_exact(model: onnx.ModelProto, run: Callable[[np.ndarray], np.ndarray]) -> None:
    """``run`` (x -> y) of an ``epilogue_model`` artifact equals, at batches 2 and 45, the exact integer sums of
    ORT's own quantized x, times ORT's scale, plus the bias (rounded apart), clipped at 0."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(v, t, None) for v, t in (("xq", 2), ("s", 1), ("xz", 2)))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for batch in (2, 45):
        x = np.random.default_rng(batch).standard_normal((batch, 96)).astype(np.float32) * 3
        xq, s, xz = sess.run(["xq", "s", "xz"], {"x": x})
        acc = ((xq.astype(np.int64) - int(xz)) @ inits["w"].astype(np.int64)).astype(np.float32)
        ref = np.maximum(acc * s + inits["b"], np.float32(0))
        np.testing.assert_array_equal(run(x), ref)


def block_model(k: int = 384, n: int = 1536) -> onnx.ModelProto:
    """quantize_dynamic's form of one layer whose int8 weight is pruned 90% in 1x4 blocks (1 output x 4 inputs)."""
    rng = np.random.default_rng(9)
    w = rng.integers(-127, 128, (k, n))
    w[w == 0] = 1
    keep = rng.random((k // 4, n)) < 0.1
    return dynamic_int8_layer(w * np.repeat(keep, 4, axis=0), np.array(0.01))


@needs_cross
@pytest.mark.parametrize(("cpu", "expected"), [(CPU, "int8:1x4"), ("", "bsr:1x4"), ("cortex-a53", "bsr:1x4")])
def test_auto_ranks_sdot_kernels_where_the_cpu_has_them(tmp_path: Path, cpu: str, expected: str) -> None:
    """The ARM cost estimate has an int8:1x4 row (from qemu instruction counts): ``auto`` picks it for an int8 layer
    in 1x4 blocks at M=128 on a core with dot products, and a float format where the core has none."""
    src = tmp_path / "m.onnx"
    onnx.save(block_model(), str(src))
    opts = CompileOptions(target="arm", cpu=cpu, dims={"batch": 128}, verify=False)
    res = compile_model(src, tmp_path / "m.sparsec", opts)
    assert [la["format"] for la in res.layers] == [expected], res.layers[0]["reason"]
