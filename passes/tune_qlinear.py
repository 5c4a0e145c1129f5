"""What ``--tune`` times a QLinearMatMul / QLinearConv layer against: ORT's own kernel for it (a one-node session with
the layer's activation type, weight and conv geometry), since ORT's int8 paths differ by 10x between a uint8 and an
int8 activation on x86 (passes/cost_model.ORT_S8S8_FASTER_X86)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sparsec.layer import Layer

from .calibrate_measure import bound_session
from .choose import signed_activation


def activation_dtype(layer: Layer) -> type[np.integer]:
    """The layer's integer activation type (int8 or uint8)."""
    return np.int8 if signed_activation(layer) else np.uint8


def qlinear_dense_runner(layer: Layer, x: np.ndarray, threads: int) -> Callable[[], object]:
    """ORT's QLinearMatMul (``x`` [M, K]) or QLinearConv (``x`` [B, C, H, W] or [B, C, H*W]) for the layer, on
    random integers of ``x``'s shape; one call runs it once."""
    from onnx import helper, numpy_helper
    from onnx.helper import np_dtype_to_tensor_dtype

    dt = activation_dtype(layer)
    info = np.iinfo(dt)
    rng = np.random.default_rng(2)
    g = layer.geom
    n = layer.n
    if g is None:
        xq = rng.integers(info.min, info.max + 1, x.shape).astype(dt)
        w = np.ascontiguousarray(np.clip(layer.w.T, -128, 127)).astype(np.int8)  # B[K, N]
        attrs: dict[str, Any] = {}
        y_shape: tuple[int, ...] = (x.shape[0], n)
    else:
        xq = rng.integers(info.min, info.max + 1, (x.shape[0], g.C, g.H, g.W)).astype(dt)
        w = np.clip(layer.w, -128, 127).astype(np.int8).reshape(n, g.C, g.kh, g.kw)
        attrs = {"kernel_shape": [g.kh, g.kw], "strides": [g.sh, g.sw], "dilations": [g.dh, g.dw],
                 "pads": [g.pt, g.pl, g.pb, g.pr]}  # fmt: skip
        y_shape = (x.shape[0], n, g.OH, g.OW)
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
        numpy_helper.from_array(np.array(3, dt), "xz"),
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(np.full(n, 0.01, np.float32), "ws"),
        numpy_helper.from_array(np.zeros(n, np.int8), "wz"),
        numpy_helper.from_array(np.array(0.5, np.float32), "ys"),
        numpy_helper.from_array(np.array(1, dt), "yz"),
    ]
    node = helper.make_node(layer.op, ["X", "xs", "xz", "W", "ws", "wz", "ys", "yz"], ["Y"], **attrs)
    elem = np_dtype_to_tensor_dtype(np.dtype(dt))
    graph = helper.make_graph(
        [node],
        "qlinear",
        [helper.make_tensor_value_info("X", elem, list(xq.shape))],
        [helper.make_tensor_value_info("Y", elem, list(y_shape))],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    run, _ = bound_session(model, xq, y_shape, threads, y_dtype=dt)
    return run
