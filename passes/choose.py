"""The format of one layer, from the target's cost model (a layer stays dense unless sparse is faster).

``auto`` ranks every format preset the target has a kernel for and the weight fits, by predicted latency at the
layer's M (static leading dims, else ``options.representative_m``). A sparse format is chosen only when it is
predicted at least ``MARGIN`` times faster than ORT's dense MatMul (``FAMILY_MARGIN`` for N:M; a MatMulInteger,
QLinearMatMul or QLinearConv against ORT's int8 kernel for it; a ConvInteger against ORT's float32 Conv, which it
runs on when dense). A forced
``--format`` applies to every layer it fits; a layer it does not fit stays dense with the reason recorded (and
reported by the compiler).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sparsec.errors import SparsecError
from sparsec.formats import family, get_format, integer_presets, list_presets
from sparsec.layer import INT8_MATMULS, QLINEAR_OPS, Choice, Layer
from sparsec.targets.base import Target

from .cost_model import (
    INT8_CONVERT_NS,
    ORT_CONV_FASTER,
    CostModel,
    absorbed_us,
    im2col_us,
    integer_io_us,
    reorder_us,
)

MARGIN = 1.1  # predicted speedup a sparse format needs over dense before it replaces it
# N:M predictions are the least reliable: on MiniLM-L3 pruned 2:4 (2026-11-25, ORT 1.32) the cost model gave nm:4:8
# 1.2x for the FFN layers at M=128, `--tune` measured them slower than dense, and the artifact ran at 0.86x end to end
# (1.0x with those layers dense). An N:M format must be predicted this much faster. With the AVX-512 table
# re-calibrated on AMD EPYC Zen 4 (2026-12-07) nm:2:4 on 384x1536 at M=128 was predicted 1.37x and measured 1.04-1.11x
# (benchmarks.run --quick), and MiniLM-L3 2:4 with the FFN layers in nm ran at 0.84-0.86x end to end: 1.3 -> 1.5.
FAMILY_MARGIN = {"nm": 1.5}


def margin(fmt: str) -> float:
    """The predicted speedup ``fmt`` needs before it replaces dense."""
    return FAMILY_MARGIN.get(family(fmt), MARGIN)


def fits(layer: Layer, fmt: str) -> str:
    """Why ``fmt`` cannot represent the layer's weight ("" when it can); int8 formats also need a MatMulInteger or
    QLinearMatMul (the kernel multiplies a uint8 activation as is; an int8 one is shifted to uint8 in front,
    passes/rewrite.py)."""
    if family(fmt) == "int8" and layer.qdq is not None:  # a QDQ MatMul: the integers behind it (qdq_layers.py)
        return get_format(fmt).misfit(layer.qdq.w_int, layer.profile)
    if family(fmt) == "int8" and layer.op not in INT8_MATMULS:
        return f"{fmt} runs MatMulInteger / QLinearMatMul layers and QDQ MatMuls only"
    if family(fmt) == "int8" and signed_activation(layer) and not _constant_zero_point(layer):
        return f"{fmt} shifts an int8 activation to uint8 with its zero point, which must be a constant"
    return get_format(fmt).misfit(layer.w, layer.profile)


def _constant_zero_point(layer: Layer) -> bool:
    """The activation's zero point is absent or one constant value."""
    from .graph import constant

    inputs = layer.node.inputs if layer.node is not None else ()
    if len(inputs) < 3 or inputs[2] is None:
        return True
    zp = constant(inputs[2])
    return zp is not None and zp.size == 1


def candidates(target: Target, cost: CostModel) -> list[str]:
    """Sparse presets with a kernel on the target and a cost-model entry."""
    presets = list_presets() + integer_presets()
    return [p for p in presets if p != "dense" and target.supports(p) and cost.knows(p)]


def integer_us(layer: Layer, rows: int, int8_kernel: bool, convert_ns: float = INT8_CONVERT_NS) -> float:
    """What an integer layer compiled sparse adds around its kernel (passes/cost_model.integer_io_us); 0 for others.
    An int8 kernel on an int8 activation also pays its shift to uint8 (two passes over it)."""
    if layer.qdq is not None and int8_kernel:  # a QDQ MatMul on an int8 kernel: only the shift of an int8 q,
        # shared by the layers reading it (Q/K/V)
        q = layer.qdq
        return q.shift_passes * rows * layer.k * convert_ns / 1000.0 / q.sharing if q.signed else 0.0
    if not layer.integer:
        return 0.0
    taps = layer.geom.kh * layer.geom.kw if layer.geom is not None else 1
    shift = 2 * rows * layer.k * convert_ns / 1000.0 if int8_kernel and signed_activation(layer) else 0.0
    return integer_io_us(layer.op, rows, layer.k, layer.n, int8_kernel, taps, convert_ns) + shift


def signed_activation(layer: Layer) -> bool:
    """Whether the layer's activation is int8 (ORT's s8s8 path; onnxruntime.quantization's static default): its type,
    or where types were never inferred its zero point's (the same by the ONNX spec)."""
    import onnx_ir as ir

    from .graph import constant

    if layer.qdq is not None:
        return layer.qdq.signed
    inputs = layer.node.inputs if layer.node is not None else ()
    x = inputs[0] if inputs else None
    if x is not None and x.dtype is not None:
        return x.dtype == ir.DataType.INT8
    zp = constant(inputs[2]) if len(inputs) > 2 else None
    return zp is not None and zp.dtype == np.int8


def floats_dense(layer: Layer, cost: CostModel) -> bool:
    """Whether the layer, left dense, runs exactly on ORT's float32 MatMul/Conv (passes/float_qlinear.py): a QLinear
    layer with an int8 activation where ORT's int8-activation kernels are the slower ones (x86)."""
    return (
        layer.op in QLINEAR_OPS
        and layer.float_exact
        and cost.s8s8_faster < 1
        and signed_activation(layer)
        and _constant_zero_point(layer)
    )


def dense_time_us(layer: Layer, cost: CostModel, rows: int) -> float:
    """The cost model's time of ORT's dense MatMul (Conv: its Conv) for the layer at M = ``rows``; int8 layers
    against ORT's int8 kernels (a ConvInteger against its float32 Conv, on which it runs when dense)."""
    dense_us = cost.predict_us("dense", layer.k, layer.n, layer.k * layer.n, rows)
    if layer.geom is not None:
        dense_us /= ORT_CONV_FASTER[layer.geom.pointwise]
    if floats_dense(layer, cost):  # ORT's float32 kernel, with the same conversions around it as a float kernel's
        return dense_us + integer_us(layer, rows, int8_kernel=False, convert_ns=cost.convert_ns)
    if layer.op in INT8_MATMULS or layer.op == "QLinearConv":
        return dense_us / cost.int8_speed(rows, signed_activation(layer))
    return dense_us


def predicted_speedup(layer: Layer, cost: CostModel, rows: int) -> Callable[[str], float]:
    """fmt -> the cost model's predicted speedup of the layer in ``fmt`` over ORT dense at M = ``rows``."""
    p = layer.profile
    assert p is not None
    dense_us = dense_time_us(layer, cost, rows)
    dense_us += absorbed_us(rows, layer.n, layer.absorbed)  # ORT's nodes that the sparse kernel's epilogue takes in
    g = layer.geom
    extra_us = cost.node_us  # sparse-side extra microseconds: the node around the kernel
    if g is not None:  # conv: ORT's Conv beats its MatMul; a kxk sparse conv also pays for its im2col
        extra_us += 0.0 if g.pointwise else im2col_us(layer.k, rows, g.OW, g.sh > 1 or g.sw > 1)
        extra_us += reorder_us(layer.reorder)  # and ORT's layout conversions next to its own NCHWc convs

    def speedup(fmt: str) -> float:
        f = get_format(fmt)
        # float kernels: X made float32 first
        extra = extra_us + integer_us(layer, rows, f.family == "int8", cost.convert_ns)
        return dense_us / (cost.predict_us(fmt, layer.k, layer.n, p.stored(f, layer.w), rows) + extra)

    return speedup


def choose(layer: Layer, fmt_option: str, presets: list[str], cost: CostModel, rows: int) -> Choice:
    """The format of one layer and the reason, for ``--format fmt_option``."""
    if layer.skip:
        return Choice("dense", f"stays dense: {layer.skip}")
    if fmt_option == "dense":
        return Choice("dense", "stays dense: --format dense")
    speedup = predicted_speedup(layer, cost, rows)
    if fmt_option != "auto":
        why = fits(layer, fmt_option)
        if why:
            return Choice("dense", f"stays dense: {why}")
        if not cost.knows(fmt_option):
            return Choice(fmt_option, "forced by --format")
        return Choice(
            fmt_option, f"forced by --format (predicted {speedup(fmt_option):.2f}x of dense)", speedup(fmt_option)
        )
    ranked = sorted(((speedup(f), f) for f in presets if not fits(layer, f)), reverse=True)
    if not ranked:
        return Choice("dense", "stays dense: no sparse format fits")
    passing = [(s, f) for s, f in ranked if s >= margin(f)]
    if passing:
        best, fmt = passing[0]
        return Choice(fmt, f"predicted {best:.1f}x of dense at M={rows}", best)
    best, fmt = ranked[0]
    need = f", needs {margin(fmt):.1f}x" if margin(fmt) != MARGIN else ""
    return Choice("dense", f"stays dense: predicted {best:.2f}x of dense at M={rows} (best: {fmt}{need})", best)


def check_forced(fmt_option: str, target: Target) -> None:
    """A forced format must have a kernel on the target (fails before any work)."""
    if fmt_option in ("auto", "dense"):
        return
    if not target.supports(fmt_option):
        note = target.unsupported_note(fmt_option)
        raise SparsecError(f"--format {fmt_option}: no {target.name} kernel for this format{note}")
