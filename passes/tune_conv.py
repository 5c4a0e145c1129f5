"""What ``--tune`` needs for Conv layers: ORT's dense Conv at the layer's geometry, and the layer's inputs/outputs in
the conv kernel layout (X[batch, C, H*W] -> Y[batch, N, OH*OW])."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sparsec.layer import Layer

from .calibrate_measure import bound_session


def batch_of(layer: Layer, rows: int) -> int:
    """Images per run: the layer's M is batch x output pixels."""
    assert layer.geom is not None
    return max(1, rows // layer.geom.P)


def conv_io(layer: Layer, rows: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """A random input in the kernel layout and the output shape (a dynamic conv: at the size it is ranked at)."""
    g = layer.geom
    assert g is not None
    b = batch_of(layer, rows)
    spatial = (g.H, g.W) if g.dynamic else (g.H * g.W,)  # a kernel sized at run time reads H and W from X
    x = np.random.default_rng(rows).standard_normal((b, g.C, *spatial)).astype(np.float32)
    return x, (b, layer.n, g.P)


def dense_conv_runner(layer: Layer, x: np.ndarray, threads: int) -> tuple[Callable[[], object], Any]:
    """ORT's Conv on ``x`` (its own NCHWc kernels) through ``bound_session``: (one call runs the layer once, the bound
    output OrtValue)."""
    from onnx import TensorProto, helper, numpy_helper

    g = layer.geom
    assert g is not None
    b = x.shape[0]
    node = helper.make_node(
        "Conv", ["X", "W"], ["Y"], kernel_shape=[g.kh, g.kw], strides=[g.sh, g.sw], dilations=[g.dh, g.dw],
        pads=[g.pt, g.pl, g.pb, g.pr],
    )  # fmt: skip
    w4 = np.ascontiguousarray(layer.w.reshape(layer.n, g.C, g.kh, g.kw))
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [b, g.C, g.H, g.W])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [b, layer.n, g.OH, g.OW])],
        [numpy_helper.from_array(w4, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return bound_session(model, x.reshape(b, g.C, g.H, g.W), (b, layer.n, g.OH, g.OW), threads)
