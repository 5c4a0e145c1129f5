"""ConvInteger layers (onnxruntime.quantization's dynamic mode on CNNs): group-1 convs compile sparse on the float32
conv kernels and every other one (dense, depthwise) runs on ORT's float32 Conv, both exactly (equal to ConvInteger's
int32 sums); checked against ORT on u8u8 models (exact in ORT) and against the exact sums on u8s8 ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from sparsec.compiler import compile_model
from sparsec.node import sparse_protos
from sparsec.options import CompileOptions
from tests.targets.arm_models import needs_qemu
from tests.targets.wasm_helpers import needs_wasm


def _quantized(tmp_path: Path, arch: str, unsigned: bool) -> Path:
    """A generated CNN pruned 80% and quantized dynamically (uint8 or int8 weights)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from models import cnn
    from sparsec.prune import parse_pattern, prune_model

    dense = {"resnet": cnn.resnet, "mobilenet_v2": cnn.mobilenet_v2}[arch](resolution=32, classes=10)
    pruned = tmp_path / "pruned.onnx"
    onnx.save(prune_model(dense, parse_pattern("unstructured:0.8"))[0], str(pruned))
    out = tmp_path / f"{arch}_{'u8' if unsigned else 's8'}.onnx"
    quantize_dynamic(str(pruned), str(out), weight_type=QuantType.QUInt8 if unsigned else QuantType.QInt8)
    return out


def _feeds(model: Path, seed: int) -> dict[str, np.ndarray]:
    inp = onnx.load(str(model)).graph.input[0]
    shape = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
    return {inp.name: np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}


def test_group1_convinteger_layers_are_sparse_and_the_rest_run_as_float_convs(tmp_path: Path) -> None:
    from sparsec.runtime import InferenceSession

    src = _quantized(tmp_path, "mobilenet_v2", unsigned=True)
    res = compile_model(src, tmp_path / "m.sparsec", CompileOptions(format="csr"))
    convs = [la for la in res.layers if la["op"] == "ConvInteger"]
    sparse = [la for la in convs if la["format"] == "csr"]
    depthwise = [la for la in convs if "depthwise" in la["reason"]]
    assert sparse and depthwise and len(sparse) + len(depthwise) == len(convs)
    assert all(la["weight_dtype"] == "uint8" for la in convs)
    assert all("runs exactly on ORT's float32 Conv" in la["reason"] for la in depthwise)
    m = onnx.load(str(res.artifact / "model.onnx"))
    assert "ConvInteger" not in {n.op_type for n in m.graph.node}
    assert len(sparse_protos(m)) >= len(sparse) and res.errors and max(res.errors.values()) == 0.0
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    sess = InferenceSession(res.artifact)
    for seed in (1, 2):
        feeds = _feeds(src, seed)
        np.testing.assert_array_equal(sess.run(None, feeds)[0], ref.run(None, feeds)[0])  # the same bytes as ORT


def test_u8s8_convs_verify_against_the_exact_sums(tmp_path: Path) -> None:
    """int8 weights: ORT's own ConvInteger may saturate without VNNI; the compile's reference computes them exactly
    and every sparse layer's output matches it to the last bit."""
    src = _quantized(tmp_path, "resnet", unsigned=False)
    res = compile_model(src, tmp_path / "r.sparsec", CompileOptions(format="bsr:4x1"))
    sparse = [la for la in res.layers if la["op"] == "ConvInteger" and la["format"] == "bsr:4x1"]
    assert len(sparse) >= 10 and max(res.errors.values()) == 0.0
    assert res.checked.startswith(f"{len(sparse) + sum(la['op'] == 'MatMulInteger' for la in res.layers)}/")


def test_auto_keeps_dense_convs_on_float_convs_with_no_flags(tmp_path: Path) -> None:
    src = _quantized(tmp_path, "resnet", unsigned=True)
    res = compile_model(src, tmp_path / "a.sparsec", CompileOptions())
    m = onnx.load(str(res.artifact / "model.onnx"))
    assert "ConvInteger" not in {n.op_type for n in m.graph.node} and max(res.errors.values()) == 0.0


@pytest.mark.parametrize("target", [pytest.param("wasm", marks=needs_wasm), pytest.param("arm", marks=needs_qemu)])
def test_integer_convs_on_other_cpu_targets(tmp_path: Path, target: str) -> None:
    from sparsec.targets.registry import get_target

    src = _quantized(tmp_path, "resnet", unsigned=True)
    res = compile_model(src, tmp_path / f"{target}.sparsec", CompileOptions(target=target, format="csr"))
    assert any(la["op"] == "ConvInteger" and la["format"] == "csr" for la in res.layers)
    feeds = _feeds(src, 3)
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_array_equal(get_target(target).run_artifact(res.artifact, feeds)[0], ref)
