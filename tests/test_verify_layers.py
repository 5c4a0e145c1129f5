"""Per-layer verification (issue 17): a kernel broken in one layer of a deep model whose end outputs saturate is
caught, by layer name, while the end-output check alone passes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper

from sparsec.compiler import compile_model
from sparsec.errors import SparsecError
from sparsec.options import CompileOptions
from sparsec.verify_layers import Tap, check_layers, taps, with_outputs
from tests.passes.graphs import model, weight
from tests.targets.arm_models import needs_qemu
from tests.targets.wasm_helpers import needs_wasm

WIDTH, DEPTH = 48, 10


def saturating_mlp(seed: int = 0) -> onnx.ModelProto:
    """x[batch, 48] -> 10 x (MatMul, bias Add, Relu) -> MatMul -> Sigmoid(1e4 * logits): the outputs are exactly
    0 or 1 in float32 for almost any input, so a 1% error in a middle layer does not show in them."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: dict[str, np.ndarray] = {}
    x = "x"
    for i in range(DEPTH):
        w = weight(rng, WIDTH, WIDTH, density=0.3) * np.float32(1.5)
        inits[f"w{i}"], inits[f"b{i}"] = np.ascontiguousarray(w.T), rng.standard_normal(WIDTH).astype(np.float32)
        nodes += [
            helper.make_node("MatMul", [x, f"w{i}"], [f"mm{i}"], name=f"fc{i}"),
            helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"pre{i}"], name=f"bias{i}"),
            helper.make_node("Relu", [f"pre{i}"], [f"h{i}"], name=f"relu{i}"),
        ]
        x = f"h{i}"
    inits["head"] = np.ascontiguousarray(weight(rng, 4, WIDTH, density=0.5).T)
    inits["gain"] = np.array(1e4, np.float32)
    nodes += [
        helper.make_node("MatMul", [x, "head"], ["logits"], name="head"),
        helper.make_node("Mul", ["logits", "gain"], ["scaled"], name="gain"),
        helper.make_node("Sigmoid", ["scaled"], ["y"], name="squash"),
    ]
    return model(nodes, inits, {"x": ["batch", WIDTH]}, {"y": ["batch", 4]})


def break_layer(monkeypatch: pytest.MonkeyPatch, layer_index: int) -> None:
    """Make the packed values of the ``layer_index``-th packed layer 1% too large: a kernel that computes wrong."""
    import sparsec.passes.rewrite as rewrite

    real = rewrite.get_format
    calls = {"n": 0}

    class Broken:
        def __init__(self, fmt: Any) -> None:
            self.fmt = fmt

        def __getattr__(self, name: str) -> Any:
            return getattr(self.fmt, name)

        def pack(self, w: np.ndarray) -> dict[str, np.ndarray]:
            packed = dict(self.fmt.pack(w))
            if calls["n"] == layer_index:
                packed["values"] = (packed["values"] * np.float32(1.01)).astype(np.float32)
            calls["n"] += 1
            return packed

    monkeypatch.setattr(rewrite, "get_format", lambda name: Broken(real(name)))


@pytest.mark.parametrize(
    "target", ["x86", pytest.param("wasm", marks=needs_wasm), pytest.param("arm", marks=needs_qemu)]
)
def test_broken_layer_is_caught_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    src = tmp_path / "deep.onnx"
    onnx.save(saturating_mlp(), str(src))
    break_layer(monkeypatch, 4)
    with pytest.raises(SparsecError, match=r"sparse layer 'fc4' .*differs from ORT.*end outputs within 0\)"):
        compile_model(src, tmp_path / "deep.sparsec", CompileOptions(target=target, format="csr", verify=True))
    assert not (tmp_path / "deep.sparsec").exists()  # nothing written half-way


def test_end_outputs_alone_miss_the_broken_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reason for the per-layer check: the same broken artifact passes an end-output comparison exactly."""
    from sparsec.verify import compare_artifact, random_feeds

    m = saturating_mlp()
    src = tmp_path / "deep.onnx"
    onnx.save(m, str(src))
    break_layer(monkeypatch, 4)
    res = compile_model(src, tmp_path / "deep.sparsec", CompileOptions(format="csr", verify=False))
    errors = compare_artifact(m, res.artifact, random_feeds(m, {"batch": 3}, seed=1))
    assert errors == {"y": 0.0}


def test_healthy_deep_model_checks_every_layer(tmp_path: Path) -> None:
    src = tmp_path / "deep.onnx"
    onnx.save(saturating_mlp(), str(src))
    res = compile_model(src, tmp_path / "deep.sparsec", CompileOptions(format="csr", verify=True))
    assert res.checked == f"{DEPTH + 1}/{DEPTH + 1} sparse layers checked"
    assert f"{DEPTH + 1}/{DEPTH + 1} sparse layers checked" in res.summary()


def test_taps_follow_fused_outputs_and_shrunk_channels(tmp_path: Path) -> None:
    """A fused layer is checked at the value after its epilogue (the Relu's output), which the original has too."""
    from sparsec.pipeline import compile_graph
    from sparsec.targets.registry import get_target

    m = saturating_mlp()
    narrowed: dict[str, tuple[int, tuple[int, ...]]] = {}
    rewritten, _ = compile_graph(m, get_target("x86"), CompileOptions(format="csr"), narrowed=narrowed)
    found, unmatched = taps(rewritten, m, narrowed)
    assert unmatched == []
    assert [t.value for t in found] == [f"h{i}" for i in range(DEPTH)] + ["logits"]
    assert [t.activation for t in found] == ["x"] + [f"h{i}" for i in range(DEPTH)]


def test_constant_activation_is_reported_unexercised() -> None:
    """A layer whose input never varies cannot show a wrong weight: it is named, after every round was tried."""
    seen: list[float] = []

    def reference(feeds: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        return {"a": np.zeros(4, np.float32), "y": np.ones(4, np.float32), "b": feeds["x"], "z": feeds["x"]}

    def compiled(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": np.ones(4, np.float32), "z": feeds["x"]}

    def feeds_for(offset: int, scale: float) -> dict[str, np.ndarray]:
        seen.append(scale)
        return {"x": np.arange(4, dtype=np.float32) * scale}

    report = check_layers([Tap("dead", "y", "a"), Tap("live", "z", "b")], reference, compiled, feeds_for)
    assert report.unexercised == ["dead"] and report.rounds == 3 and len(seen) == 3
    assert report.errors == {"dead": 0.0, "live": 0.0}
    assert "1 with a constant input on random data: dead" in report.summary()


def test_mismatch_in_one_tap_is_measured() -> None:
    def reference(feeds: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        return {"y": np.array([1.0, 2.0], np.float32), "a": np.array([0.0, 1.0], np.float32)}

    def compiled(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": np.array([1.0, 2.2], np.float32)}

    report = check_layers([Tap("l", "y", "a")], reference, compiled, lambda o, s: {})
    assert report.rounds == 1
    assert report.errors["l"] == pytest.approx(0.1, rel=1e-5)


def test_narrowed_reference_keeps_only_the_kept_channels() -> None:
    def reference(feeds: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        return {"y": np.array([[1.0, 9.0, 3.0]], np.float32), "a": np.array([0.0, 1.0], np.float32)}

    def compiled(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": np.array([[1.0, 3.0]], np.float32)}

    tap = Tap("l", "y", "a", narrowed=(-1, (0, 2)))
    assert check_layers([tap], reference, compiled, lambda o, s: {}).errors == {"l": 0.0}


def test_with_outputs_keeps_the_model_and_adds_typed_outputs() -> None:
    m = saturating_mlp()
    out = with_outputs(m, ["h3", "y", "h3"])
    assert [o.name for o in out.graph.output] == ["y", "h3"]
    assert out.graph.output[1].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in m.graph.output] == ["y"]


def test_shrunk_layers_are_checked_on_their_kept_channels(tmp_path: Path) -> None:
    """shrink removes channels between two layers: the first layer's output is compared on the channels it kept."""
    rng = np.random.default_rng(3)
    w1, w2 = weight(rng, 32, 24, density=0.5), weight(rng, 16, 32, density=0.5)
    w1[[3, 7, 20]] = 0  # outputs 3, 7, 20 of layer 1 are always 0 after its Relu: shrink drops them
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["a"], name="fc1"),
        helper.make_node("Relu", ["a"], ["h"], name="relu"),
        helper.make_node("MatMul", ["h", "w2"], ["y"], name="fc2"),
    ]
    m = model(
        nodes, {"w1": np.ascontiguousarray(w1.T), "w2": np.ascontiguousarray(w2.T)}, {"x": ["b", 24]}, {"y": ["b", 16]}
    )
    from sparsec.pipeline import compile_graph
    from sparsec.targets.registry import get_target

    narrowed: dict[str, tuple[int, tuple[int, ...]]] = {}
    compile_graph(m, get_target("x86"), CompileOptions(format="csr"), narrowed=narrowed)
    assert narrowed["h"] == (-1, tuple(i for i in range(32) if i not in (3, 7, 20)))
    src = tmp_path / "m.onnx"
    onnx.save(m, str(src))
    res = compile_model(src, tmp_path / "m.sparsec", CompileOptions(format="csr", verify=True))
    assert res.checked == "2/2 sparse layers checked"


def test_quantized_taps_allow_rare_one_step_flips_only() -> None:
    from sparsec.verify_layers import FLIP_SHARE, quantized_error

    step = 0.25
    ref = np.round(np.random.default_rng(0).standard_normal((64, 100)) * 20) * step  # on the quantization grid
    got = ref.copy()
    assert quantized_error(got, ref, (step,)) == (0.0, 0)
    allowed = int(FLIP_SHARE * ref.size)  # 6 of 6400
    got.flat[:allowed] += step  # one step up at a few rounding boundaries
    assert quantized_error(got, ref, (step,)) == (0.0, allowed)
    more = got.copy()
    more.flat[allowed] -= step  # one flip too many: every value counts again
    err, flips = quantized_error(more, ref, (step,))
    assert flips == 0 and err == pytest.approx(step / np.abs(ref).max())
    far = ref.copy()
    far.flat[0] += 2 * step  # two steps with one fused quantizer is not a flip
    assert quantized_error(far, ref, (step,))[0] > 1e-3
    assert quantized_error(far, ref, (step, step)) == (0.0, 1)  # two fused quantizers: up to both steps
    tap = Tap("fc", "y", "x", None, (step,))
    report = check_layers(
        [tap], lambda feeds, names: {"y": ref, "x": ref}, lambda feeds: {"y": got}, lambda seed, scale: {}
    )
    assert report.errors == {"fc": 0.0} and report.flips == {"fc": allowed}
    assert (
        report.summary()
        == f"1/1 sparse layers checked; {allowed} quantized values one step off ORT's at rounding boundaries"
    )
