"""Cost model: predicted latency of one layer in each format on a target, from measured constants.

Per (ISA, format) and per representative batch size ``m`` in the table (1, 16, 128 and, in tables calibrated since
2026-12-07, 1024), the time of one layer is
``t_us = M * (a * stored + b * N) / 1000 + c`` with ``stored`` the number of stored weight values (explicit zeros in
blocks and N:M slots included) and, for ``dense`` (ORT's MatMul), ``stored = K * N``. The bucket nearest to M (in
log scale) is used. A conv layer is predicted as the product W[N, K] x col[K, pixels] with M = batch * output
pixels (the sparse conv templates run the same inner loop as the matmul ones), plus ``im2col_us`` on the sparse
side when the conv is not pointwise. Constants are fitted from measurements by ``python -m sparsec.passes.calibrate``
and stored in ``cost_data/<target>.json`` with the command and host that produced them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from sparsec.errors import SparsecError
from sparsec.formats import family

DATA_DIR = Path(__file__).with_name("cost_data")


# What a sparse layer costs as a node in the model beyond its kernel: the EP's per-run work (input checks, DLTensors,
# the parallel launch on ORT's pool) and ORT's dispatch of the node. The tables time kernels alone (TVM, no EP) and
# ORT's MatMul as a one-node session (its dispatch included), so tiny layers looked free to make sparse (PaddleOCR
# cls: SE-block 1x1 convs on 1x1 pixels predicted 100-1600x, the model ran at 0.89x of dense). Measured
# (AMD EPYC Zen 4, 2 threads, 2026-12-06): 20 chained 64->64 1x1 convs at 20% density on 1 pixel, sparsec bench
# 0.051-0.060 ms vs ORT 0.033-0.037 ms: about 2.4 us per sparse node against ORT's 1.7 us per Conv, of which the
# kernel's table intercept is 0.4 us.
EP_NODE_US = 2.0
# ORT's nodes after a MatMul that a sparse kernel's epilogue takes in (passes/absorbed.py): (us, ns per output
# element), as each node costs in a model (the tables time ORT's MatMul alone). Measured alone, one-node sessions over
# a [1, M, N] input with symbolic dims (as ORT runs them after a MatMul), 2 threads spinning, interleaved, the fastest
# of 3 medians (AMD EPYC Zen 4, ORT 1.32, 2026-12-07), less ORT's 2.7 us run overhead (a Relu of 384 elements):
# bias Add 12.3 / 22.9 / 47.6 / 143.5 us at 128x384 / 128x1536 / 1024x384 / 1024x1536, a residual Add 10.6 / 23.6
# / 36.8 / 138.2 us; BiasGelu (bias Add + erf GELU) 24.8 / 99.4 / 176.0 / 766.7 us. A Gemm's own Gelu is taken at
# BiasGelu's cost. Until 2026-12-07 the bias Add was charged 3 us + 0.45 ns per element, from MatMul + Add against
# MatMul with all dims known, where ORT had made the pair a Gemm. Applied on every target, measured on x86 only.
# The nodes of an erf GELU ORT does not fuse (passes/absorbed.py) are charged an Add's cost each (not measured one
# by one: an elementwise pass over the output at least).
_ELEMENTWISE = (1.5, 0.09)  # an Add, as measured
ORT_EPILOGUE_COST = {
    "BiasGelu": (1.5, 0.48),
    "Gelu": (1.5, 0.48),
    **{op: _ELEMENTWISE for op in ("Add", "Div", "Mul", "Erf")},
}


def absorbed_us(rows: int, n: int, ops: tuple[str, ...]) -> float:
    """The time ORT spends on the nodes ``ops`` over an [rows, n] output, which a sparse kernel absorbs."""
    return sum(ORT_EPILOGUE_COST[op][0] + rows * n * ORT_EPILOGUE_COST[op][1] / 1000 for op in ops)


# ORT's int8 MatMul (DynamicQuantizeLinear + MatMulInteger + scale, which ORT fuses into DynamicQuantizeMatMul)
# against its float32 MatMul on the same shape, 384x1536 and 1536x384 at M = 1, 16, 128, 1024, 2 threads, ORT 1.32
# (passes/calibrate_measure.dense_runner / int8_dense_runner): without int8 dot-product instructions (AMD EPYC Zen 3,
# AVX2, 2026-12-06) 1.4-3.2x faster, median 1.7 (one noisy outlier at 0.7x left out); with AVX-512 VNNI (AMD EPYC
# Zen 4, 2026-12-07) 1.7-3.2x, median 2.9. Key: the target's CPU has int8 dot products (Target.int8_dot). A
# MatMulInteger layer's dense time is the float32 table's divided by this; its sparse side also pays
# INT8_CONVERT_NS per activation value (the DequantizeLinear making the kernel's float32 input, passes/integer.py).
ORT_INT8_FASTER = {False: 1.7, True: 2.9}
INT8_CONVERT_NS = 0.25
# ORT's int8 GEMM with a signed int8 activation (s8s8: QLinearMatMul / QLinearConv as onnxruntime.quantization's
# static mode writes them by default, activation_type QInt8) has no fast MLAS kernel on x86 CPUs without AVX-VNNI-INT8:
# measured (AMD EPYC Zen 4, AVX-512 VNNI, ORT 1.32, 2 threads, 2026-12-07, one-node sessions) QLinearMatMul s8s8
# 384x1536, 1536x384, 384x384 at M = 1, 16, 128, 1024 ran at 0.20-0.34x of ORT's float32 MatMul (median 0.27; u8s8
# 1.7-3.6x), QLinearConv s8 1x1 and 3x3 at 0.28-0.38x of its float32 Conv (u8 2.0-3.3x). ARM's MLAS has s8s8
# dot-product kernels: other targets rank a signed activation like an unsigned one.
ORT_S8S8_FASTER_X86 = 0.3


@dataclass(frozen=True)
class CostModel:
    """Latency predictions for one target/ISA, read from a calibration table."""

    target: str
    isa: str
    table: dict[str, dict[str, list[float]]]  # format -> bucket m -> [a_ns, b_ns, c_us]
    source: str
    node_us: float = EP_NODE_US  # added to every sparse prediction: the node around the kernel
    int8_faster: float = ORT_INT8_FASTER[False]  # ORT's int8 MatMul against its float32 one on this CPU
    s8s8_faster: float = ORT_INT8_FASTER[False]  # the same with a signed int8 activation
    int8_measured: tuple[tuple[int, float], ...] = ()  # (M, int8_faster) measured with the table, by bucket
    convert_ns: float = INT8_CONVERT_NS  # an integer layer's activation made float32 for a float kernel, per value

    def buckets(self, fmt: str) -> dict[int, list[float]]:
        key = fmt if fmt in self.table else family(fmt)
        if key not in self.table:
            raise KeyError(fmt)
        return {int(m): v for m, v in self.table[key].items()}

    def knows(self, fmt: str) -> bool:
        try:
            self.buckets(fmt)
        except KeyError:
            return False
        return True

    def int8_speed(self, m: int, signed: bool = False) -> float:
        """ORT's int8 MatMul against its float32 one at M = ``m`` (``signed``: an int8 activation, which has its
        own factor where ORT's kernels for it are the slower ones, x86)."""
        if signed and self.s8s8_faster < 1:
            return self.s8s8_faster
        if not self.int8_measured:
            return self.int8_faster
        return min(self.int8_measured, key=lambda mf: abs(math.log(mf[0]) - math.log(max(m, 1))))[1]

    def predict_us(self, fmt: str, k: int, n: int, stored: int, m: int) -> float:
        """Predicted microseconds for Y[m, n] = X[m, k] @ W^T with ``stored`` weight values in ``fmt``."""
        table = self.buckets(fmt)
        bucket = min(table, key=lambda b: abs(math.log(b) - math.log(max(m, 1))))
        a, b, c = table[bucket]
        if fmt == "dense":
            stored = k * n
        return m * (a * stored + b * n) / 1000.0 + c


# im2col of a non-pointwise sparse conv (targets/x86/templates/conv.py), ns per element of col[K, P], 2 threads,
# measured with TVM's time_evaluator on near-empty weights (Zen 4): 3x3 stride 1 on 64x56x56 0.27 ms (0.15 ns per
# element), 3x3 on 256x14x14 0.35 ms (0.75 ns: short rows), 3x3 stride 2 on 3x224x224 0.14 ms (0.42 ns). Fitted as
# a per-element cost plus a per-row one spread over the OW elements of a row. ORT's dense conv packs its input too,
# but faster: the sparse side is charged the whole im2col (conservative).
IM2COL_NS = {False: 0.15, True: 0.4}  # per element; key: strided
IM2COL_ROW_NS = 8.0  # per output row of col


# ORT runs Conv in its NCHWc layout with direct AVX-512 kernels, faster than its MatMul at the same product size
# (which is what the "dense" table measures). Median of measured (sparse conv vs ORT Conv) / predicted speedups,
# single conv layers at 80% sparsity, batch 1, 2 threads: pointwise 1.4 (64..1024 channels, 7..56 px), kxk 1.9
# (3x3, strides 1 and 2). Dense conv predictions are divided by these.
ORT_CONV_FASTER = {True: 1.4, False: 2.0}  # key: pointwise


# ORT's ConvInteger (im2col + int8 GEMM, after DynamicQuantizeLinear) against its float32 NCHWc Conv: 2.4-5.5x SLOWER
# (same host; 3x3 64->64 at 56 px, 128->128 at 28 px, 128->256 stride 2; 1x1 256->64 at 28 px, 64->256 at 56 px),
# so a ConvInteger that stays dense runs exactly on ORT's float32 Conv (passes/integer.float_conv) and a sparse one
# is ranked against that.

REORDER_NS = 0.12  # ORT's NCHW <-> NCHWc conversion per element (passes/layout.py)


def integer_io_us(
    op: str, rows: int, k: int, n: int, int8_kernel: bool, taps: int = 1, convert_ns: float = INT8_CONVERT_NS
) -> float:
    """Predicted microseconds a sparse integer layer adds around its kernel, at ``INT8_CONVERT_NS`` per value: a
    float kernel's float32 input (``rows`` x ``k``; a conv's ``k`` counts each input ``taps`` = kh * kw times), and a
    QLinear layer's requantization of its ``rows`` x ``n`` outputs (Mul and QuantizeLinear; the Mul runs inside an
    int8 kernel). ConvInteger: none (ranked against ORT's float32 Conv, which converts its input too)."""
    if op == "ConvInteger":
        return 0.0
    values = 0 if int8_kernel else rows * k // max(taps, 1)
    if op.startswith("QLinear"):
        values += rows * n * (1 if int8_kernel else 2)
    return values * convert_ns / 1000.0


def reorder_us(elements: int) -> float:
    """Predicted microseconds ORT spends converting ``elements`` between NCHW and NCHWc."""
    return elements * REORDER_NS / 1000.0


def im2col_us(k: int, rows: int, out_w: int, strided: bool) -> float:
    """Predicted microseconds of a sparse conv's im2col: K values for each of ``rows`` output pixels (all images),
    in rows of ``out_w`` pixels."""
    return k * rows * (IM2COL_NS[strided] + IM2COL_ROW_NS / max(out_w, 1)) / 1000.0


@cache
def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def cost_model(target: str, isa: str, int8_dot: bool = False) -> CostModel:
    """The calibrated model for ``target``/``isa``; an ISA without its own table uses the target's nearest one.
    ``int8_dot``: the CPU has int8 dot-product instructions, which ORT's int8 MatMul uses."""
    path = DATA_DIR / f"{target}.json"
    if not path.is_file():
        raise SparsecError(f"no cost model for target {target!r} ({path} missing): run sparsec tune-cost-model")
    data = _load(path)
    tables = data["isa"]
    chosen = isa if isa in tables else sorted(tables)[0]
    source = data.get("sources", {}).get(chosen, data.get("source", ""))  # per-ISA source when tables were merged
    int8 = ORT_INT8_FASTER[int8_dot]
    s8s8 = ORT_S8S8_FASTER_X86 if target == "x86" else int8
    # a table measured against the target's own ORT build says, per M, how much faster its int8 MatMul is (wasm:
    # onnxruntime-web, benchmarks/wasm_calibrate.py --int8); signed activations are ranked as unsigned there
    measured = tuple(sorted((int(m), float(f)) for m, f in data.get("ort_int8_faster", {}).get(chosen, {}).items()))
    convert = float(data.get("int8_convert_ns", {}).get(chosen, INT8_CONVERT_NS))  # wasm: onnxruntime-web's, measured
    return CostModel(
        target,
        chosen,
        tables[chosen],
        str(source),
        int8_faster=int8,
        s8s8_faster=s8s8,
        int8_measured=measured,
        convert_ns=convert,
    )
