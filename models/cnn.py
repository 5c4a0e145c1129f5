"""Generated CNNs (onnx.helper, random He-initialized weights, NCHW, symbolic batch): the conv benchmark's models.

- ``mobilenet_v1``: 3x3 stride-2 stem, then depthwise 3x3 + pointwise 1x1 blocks (Relu6 as Clip), global average
  pool and a Gemm classifier.
- ``mobilenet_v2``: stem, then inverted residuals: pointwise expand (x6) + depthwise 3x3 + linear pointwise project,
  residual Add where shapes allow; the activation is Relu6 (Clip), SiLU (x * Sigmoid(x)) or HardSwish.
- ``resnet``: 7x7 stride-2 stem + max pool, then bottlenecks (1x1 reduce, 3x3, 1x1 expand; a strided 1x1
  projection on the shortcut where shapes change) with residual Add + Relu.

BatchNorm is left out (an exporter folds it into the conv's weight and bias). Weights are dense; prune them with
``sparsec prune`` (``python -m models.cnn NAME OUT.onnx`` writes one).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Act = str  # "relu" | "relu6" | "silu" | "hardswish" | "none"


class _Builder:
    """Appends nodes and initializers; names are unique and readable (layer kind + counter)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}{self.count}"

    def tensor(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, group: int = 1, act: Act = "relu") -> str:
        n = self.name("dwconv" if group > 1 else "conv")
        fan_in = cin // group * k * k
        w = self.rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / fan_in)
        b = self.rng.standard_normal(cout) * 0.05
        inputs = [x, self.tensor(f"{n}.weight", w), self.tensor(f"{n}.bias", b)]
        pad = k // 2
        self.nodes.append(
            helper.make_node(
                "Conv", inputs, [n], name=n, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=group
            )
        )
        return self.act(n, act)

    def act(self, x: str, act: Act) -> str:
        if act == "none":
            return x
        n = self.name(act)
        if act == "relu":
            self.nodes.append(helper.make_node("Relu", [x], [n], name=n))
        elif act == "relu6":
            lo, hi = self.tensor(f"{n}.min", np.array(0.0)), self.tensor(f"{n}.max", np.array(6.0))
            self.nodes.append(helper.make_node("Clip", [x, lo, hi], [n], name=n))
        elif act == "silu":
            self.nodes.append(helper.make_node("Sigmoid", [x], [f"{n}.gate"], name=f"{n}.sigmoid"))
            self.nodes.append(helper.make_node("Mul", [x, f"{n}.gate"], [n], name=n))
        elif act == "hardswish":
            self.nodes.append(helper.make_node("HardSwish", [x], [n], name=n))
        else:
            raise ValueError(f"unknown activation {act!r}")
        return n

    def add(self, a: str, b: str, act: Act = "none") -> str:
        n = self.name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [n], name=n))
        return self.act(n, act)

    def head(self, x: str, channels: int, classes: int) -> str:
        pool, flat, fc = self.name("pool"), self.name("flatten"), self.name("fc")
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], [pool], name=pool))
        self.nodes.append(helper.make_node("Flatten", [pool], [flat], name=flat, axis=1))
        w = self.rng.standard_normal((classes, channels)) * np.sqrt(1.0 / channels)
        b = self.rng.standard_normal(classes) * 0.05
        inputs = [flat, self.tensor(f"{fc}.weight", w), self.tensor(f"{fc}.bias", b)]
        self.nodes.append(helper.make_node("Gemm", inputs, ["logits"], name=fc, transB=1))
        return "logits"

    def model(self, name: str, resolution: int, classes: int) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, resolution, resolution])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
            initializer=self.inits,
        )
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sparsec.models.cnn")
        m.ir_version = 8
        onnx.checker.check_model(m)
        return onnx.shape_inference.infer_shapes(m, strict_mode=True)


def mobilenet_v1(resolution: int = 224, width: float = 1.0, classes: int = 1000, seed: int = 0) -> onnx.ModelProto:
    """MobileNet-v1 layout (depthwise separable blocks), Relu6 activations."""
    b = _Builder(seed)

    def ch(c: int) -> int:
        return max(8, int(c * width))

    x = b.conv("image", 3, ch(32), 3, stride=2, act="relu6")
    cin = ch(32)
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    for cout, stride in blocks:
        x = b.conv(x, cin, cin, 3, stride=stride, group=cin, act="relu6")
        x = b.conv(x, cin, ch(cout), 1, act="relu6")
        cin = ch(cout)
    b.head(x, cin, classes)
    return b.model("mobilenet_v1", resolution, classes)


def mobilenet_v2(
    resolution: int = 224, width: float = 1.0, classes: int = 1000, act: Act = "relu6", seed: int = 0
) -> onnx.ModelProto:
    """MobileNet-v2 layout (inverted residuals, expansion 6), with a choice of activation."""
    b = _Builder(seed)

    def ch(c: int) -> int:
        return max(8, int(c * width))

    x = b.conv("image", 3, ch(32), 3, stride=2, act=act)
    cin = ch(32)
    # (expansion, out channels, repeats, first stride)
    stages = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    for t, c, n, s in stages:
        for i in range(n):
            stride, cout, hidden = s if i == 0 else 1, ch(c), cin * t
            h = b.conv(x, cin, hidden, 1, act=act) if t != 1 else x
            h = b.conv(h, hidden, hidden, 3, stride=stride, group=hidden, act=act)
            h = b.conv(h, hidden, cout, 1, act="none")
            x = b.add(h, x) if stride == 1 and cin == cout else h
            cin = cout
    x = b.conv(x, cin, ch(1280), 1, act=act)
    b.head(x, ch(1280), classes)
    return b.model(f"mobilenet_v2_{act}", resolution, classes)


def resnet(
    resolution: int = 224, blocks: tuple[int, ...] = (2, 2, 2, 2), width: int = 64, classes: int = 1000, seed: int = 0
) -> onnx.ModelProto:
    """ResNet with bottleneck blocks (expansion 4); ``blocks`` per stage ((3, 4, 6, 3) is ResNet-50's layout)."""
    b = _Builder(seed)
    x = b.conv("image", 3, width, 7, stride=2)
    pool = b.name("maxpool")
    b.nodes.append(
        helper.make_node("MaxPool", [x], [pool], name=pool, kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
    )
    x, cin = pool, width
    for stage, n in enumerate(blocks):
        mid = width * 2**stage
        for i in range(n):
            stride = 2 if i == 0 and stage > 0 else 1
            h = b.conv(x, cin, mid, 1)
            h = b.conv(h, mid, mid, 3, stride=stride)
            h = b.conv(h, mid, mid * 4, 1, act="none")
            short = b.conv(x, cin, mid * 4, 1, stride=stride, act="none") if stride != 1 or cin != mid * 4 else x
            x = b.add(h, short, act="relu")
            cin = mid * 4
    b.head(x, cin, classes)
    return b.model("resnet", resolution, classes)


GENERATORS = {"mobilenet_v1": mobilenet_v1, "mobilenet_v2": mobilenet_v2, "resnet": resnet}


def save(model: onnx.ModelProto, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in GENERATORS:
        sys.exit(f"usage: python -m models.cnn {{{','.join(GENERATORS)}}} OUT.onnx")
    print(save(GENERATORS[sys.argv[1]](), sys.argv[2]))
