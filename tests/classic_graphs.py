"""Classic CNNs as old exporters wrote them (onnx.helper): opset 9, every weight an initializer that is also listed
as a graph input, random 80%-sparse weights, a saturating Softmax at the end (issue 17)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Net:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def _name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}{self.count}"

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, group: int = 1, relu: bool = True) -> str:
        name = self._name("conv")
        shape = (cout, cin // group, k, k)
        w = self.rng.standard_normal(shape) * np.sqrt(2.0 / (shape[1] * k * k))
        w *= self.rng.random(shape) >= 0.8  # 80% zeros
        b = self.rng.standard_normal(cout) * 0.1
        self.inits += [
            numpy_helper.from_array(w.astype(np.float32), f"{name}_w_0"),
            numpy_helper.from_array(b.astype(np.float32), f"{name}_b_0"),
        ]
        pad = k // 2
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, f"{name}_w_0", f"{name}_b_0"],
                [f"{name}_out"],
                name=name,
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[pad] * 4,
                group=group,
            )
        )
        out = f"{name}_out"
        if relu:
            self.nodes.append(helper.make_node("Relu", [out], [f"{name}_relu"], name=f"{name}_relu"))
            out = f"{name}_relu"
        return out

    def op(self, op: str, inputs: list[str], **attrs: object) -> str:
        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def model(self, x: str, y: str, channels: int, size: int) -> onnx.ModelProto:
        inputs = [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [1, 3, size, size])]
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in self.inits]
        graph = helper.make_graph(
            self.nodes,
            "classic",
            inputs,
            [helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, channels])],
            self.inits,
        )
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
        m.ir_version = 4
        onnx.checker.check_model(m)
        return m


def _head(net: _Net, x: str, cin: int, classes: int) -> str:
    x = net.conv(x, cin, classes, 1)
    x = net.op("GlobalAveragePool", [x])
    x = net.op("Flatten", [x], axis=1)
    return net.op("Softmax", [net.op("Mul", [x, "logit_scale"])], axis=1)


def _scale(net: _Net) -> None:
    net.inits.append(numpy_helper.from_array(np.array(1e4, np.float32), "logit_scale"))  # saturates the Softmax


def squeezenet(size: int = 32, classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """Stem, MaxPool, fire modules (squeeze 1x1; expand 1x1 and 3x3, concatenated), conv head."""
    net = _Net(seed)
    _scale(net)
    x = net.conv("data_0", 3, 32, 3, stride=2)
    x = net.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    cin = 32
    for squeeze, expand in ((8, 32), (8, 32), (16, 48)):
        s = net.conv(x, cin, squeeze, 1)
        x = net.op("Concat", [net.conv(s, squeeze, expand, 1), net.conv(s, squeeze, expand, 3)], axis=1)
        cin = 2 * expand
    return net.model("data_0", _head(net, x, cin, classes), classes, size)


def shufflenet(size: int = 32, classes: int = 10, seed: int = 1) -> onnx.ModelProto:
    """Stem, then units of grouped 1x1 conv, channel shuffle (Reshape/Transpose/Reshape), depthwise 3x3, grouped
    1x1 conv and a residual Add."""
    net = _Net(seed)
    _scale(net)
    c, groups, hw = 24, 4, size // 2
    x = net.conv("data_0", 3, c, 3, stride=2)
    shape5 = numpy_helper.from_array(np.array([1, groups, c // groups, hw, hw], np.int64), "shuffle_in")
    shape4 = numpy_helper.from_array(np.array([1, c, hw, hw], np.int64), "shuffle_out")
    net.inits += [shape5, shape4]
    for _ in range(2):
        y = net.conv(x, c, c, 1, group=groups)
        y = net.op("Transpose", [net.op("Reshape", [y, "shuffle_in"])], perm=[0, 2, 1, 3, 4])
        y = net.op("Reshape", [y, "shuffle_out"])
        y = net.conv(y, c, c, 3, group=c, relu=False)
        y = net.conv(y, c, c, 1, relu=False)
        x = net.op("Relu", [net.op("Add", [x, y])])
    return net.model("data_0", _head(net, x, c, classes), classes, size)


def densenet(size: int = 32, classes: int = 10, seed: int = 2, layers: int = 6) -> onnx.ModelProto:
    """Stem, then a dense block: each layer's 1x1 + 3x3 convs read the concatenation of everything before."""
    net = _Net(seed)
    _scale(net)
    x = net.conv("data_0", 3, 16, 3, stride=2)
    cin = 16
    for _ in range(layers):
        y = net.conv(net.conv(x, cin, 32, 1), 32, 8, 3)
        x = net.op("Concat", [x, y], axis=1)
        cin += 8
    return net.model("data_0", _head(net, x, cin, classes), classes, size)
