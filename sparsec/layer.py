"""The one record per layer: built once by analysis, extended by each stage, printed by the manifest and ``inspect``.

A ``Layer`` is frozen. Each stage returns a new record with ``dataclasses.replace``: ``select`` (and ``--tune``) add
the ``choice`` (and ``tuning``), ``rewrite`` the ``kernel`` (what a target generates and what the EP runs),
``fuse`` the kernel's ``epilogue``, ``partition`` its ``region``. ``to_json`` is the layer's manifest entry (and,
with ``detail``, its ``sparsec inspect`` row).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .conv import ConvGeometry
from .formats.base import Packed, WeightProfile

if TYPE_CHECKING:
    import onnx_ir as ir

ACTIVATIONS = ("none", "relu", "gelu", "sigmoid", "clip", "silu", "hardswish")
# Quantized layers with an integer weight, computed exactly (passes/integer.py); the QLinear ones requantize their
# sum (passes/qlinear.py). INT8_MATMULS are the ones ORT runs on its int8 GEMM (the cost model's int8 baseline).
QLINEAR_OPS = ("QLinearMatMul", "QLinearConv")
INTEGER_OPS = ("MatMulInteger", "ConvInteger", *QLINEAR_OPS)
INT8_MATMULS = ("MatMulInteger", "QLinearMatMul")

ArraySpec = tuple[str, tuple[int, ...], str]  # a packed array: (name, shape, numpy dtype name)


# Where a fused QuantizeLinear -> DequantizeLinear pair sits in an epilogue: after the product (and scale), the bias,
# the residual or the activation; a QDQ model's GELU also quantizes its erf, erf + 1 and x * (erf + 1) (GELU_STAGES).
GELU_STAGES = ("erf", "erf_add", "gelu_mul")
QUANT_STAGES = ("product", "bias", "residual", *GELU_STAGES, "act")


@dataclass(frozen=True)
class Quant:
    """A QuantizeLinear -> DequantizeLinear pair with one constant scale and zero point (a QDQ model's activation
    quantization), applied in the epilogue after ``after`` (one of QUANT_STAGES): ``(clip(rint(v / scale), lo - zp,
    hi - zp)) * scale``, the value ORT's DequantizeLinear gives for its QuantizeLinear of ``v`` (lo, hi: the
    integer type's range)."""

    after: str
    scale: float  # a float32 value
    zero_point: int
    lo: int
    hi: int

    def __post_init__(self) -> None:
        if self.after not in QUANT_STAGES:
            raise ValueError(f"quantization after {self.after!r} (known: {', '.join(QUANT_STAGES)})")
        if not (self.scale > 0 and self.lo <= self.zero_point <= self.hi):
            raise ValueError(f"quantization scale {self.scale} / zero point {self.zero_point} out of range")

    def text(self) -> str:
        """The node configuration's form, ``after:scale:zero_point:lo:hi``."""
        return f"{self.after}:{self.scale!r}:{self.zero_point}:{self.lo}:{self.hi}"

    @classmethod
    def parse(cls, text: str) -> Quant:
        after, scale, zp, lo, hi = text.split(":")
        return cls(after, float(scale), int(zp), int(lo), int(hi))


@dataclass(frozen=True)
class Epilogue:
    """``Y = act(X @ W^T * scale + bias + residual)``: what the kernel applies after the product (``fuse`` grows it).

    ``scale`` is the number of run-time scale values (0: none; int8 kernels: 1, or N per output feature), the
    dequantization ``x_scale * w_scale`` that ``onnxruntime.quantization`` multiplies the int32 product by; the
    product and the scale are rounded apart from the additions that follow, as ORT's Mul then Add. ``quant``: the
    QuantizeLinear -> DequantizeLinear pairs fused after some of those steps (at most one per stage, in stage order).
    A GELU with quantized steps (``quant`` after each of GELU_STAGES) is computed as a QDQ model writes it,
    ``Mul(DQ(Q(Mul(x, DQ(Q(Add(DQ(Q(Erf(Div(x, d)))), one))))), half)``, with the model's ``gelu_constants``
    (d, one, half).
    """

    scale: int = 0
    bias: bool = False
    residual: bool = False
    act: str = "none"
    clip_min: float = 0.0  # act == "clip" only
    clip_max: float = 0.0
    quant: tuple[Quant, ...] = ()
    gelu_constants: tuple[float, ...] = ()  # (d, one, half) of a GELU with quantized steps
    steps: tuple[str, ...] = field(default=(), compare=False)  # what was fused, in order (reports, not the kernel)

    def __post_init__(self) -> None:
        if self.act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.act!r} (known: {', '.join(ACTIVATIONS)})")
        if self.scale < 0:
            raise ValueError(f"scale counts run-time scale values, got {self.scale}")
        at = [QUANT_STAGES.index(q.after) for q in self.quant]
        if at != sorted(set(at)):
            raise ValueError("at most one quantization per epilogue stage, in stage order")
        inner = [q.after for q in self.quant if q.after in GELU_STAGES]
        if (inner or self.gelu_constants) and (
            tuple(inner) != GELU_STAGES or self.act != "gelu" or len(self.gelu_constants) != 3
        ):
            raise ValueError("a GELU with quantized steps quantizes all three and has its three constants")

    def quant_after(self, stage: str) -> Quant | None:
        """The quantization fused after ``stage``, if any."""
        return next((q for q in self.quant if q.after == stage), None)

    def last_stage(self) -> str:
        """The latest stage this epilogue has (a quantization fused now goes after it)."""
        if self.act != "none":
            return "act"
        if self.residual:
            return "residual"
        return "bias" if self.bias else "product"


@dataclass(frozen=True)
class Kernel:
    """One sparse layer as a target generates it and the EP runs it (docs/internals.md, "Kernel ABI").

    ``arrays`` are the packed weight arrays as (name, shape, dtype) in the format's order, which is also the kernel
    argument order; ``packed`` holds their values (pattern-specialised kernels read them at build time). With
    ``conv`` the kernel is a convolution: X f32[B, C, H*W] -> Y f32[B, N, OH*OW]. ``variant`` names a schedule
    (chosen by measurement); "" is the target's default for the format and shape.
    """

    symbol: str
    format: str
    K: int  # noqa: N815 (the usual names of the product's sizes)
    N: int  # noqa: N815
    arrays: tuple[ArraySpec, ...] = ()
    epilogue: Epilogue = Epilogue()
    conv: ConvGeometry | None = None
    region: int = 0
    variant: str = ""
    packed: Packed | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.symbol.isidentifier():
            raise ValueError(f"kernel symbol {self.symbol!r} is not a C identifier")
        if self.conv is not None and self.conv.K != self.K:
            raise ValueError(f"conv geometry gives K={self.conv.K}, the kernel says K={self.K}")

    def array(self, name: str) -> tuple[tuple[int, ...], str]:
        """(shape, dtype) of the packed array ``name``."""
        for n, shape, dtype in self.arrays:
            if n == name:
                return shape, dtype
        raise KeyError(f"kernel {self.symbol} ({self.format}) has no packed array {name!r}")

    def key(self) -> dict[str, Any]:
        """What the generated code may depend on, JSON-able (cache keys): the packed arrays by digest."""
        digest = hashlib.sha256()
        for name, a in (self.packed or {}).items():
            digest.update(
                name.encode() + str(a.dtype).encode() + str(a.shape).encode() + np.ascontiguousarray(a).tobytes()
            )
        return {
            "symbol": self.symbol,
            "format": self.format,
            "K": self.K,
            "N": self.N,
            "arrays": [[n, list(s), d] for n, s, d in self.arrays],
            "epilogue": [self.epilogue.bias, self.epilogue.residual, self.epilogue.act, self.epilogue.scale],
            "clip": [self.epilogue.clip_min, self.epilogue.clip_max],
            **({"quant": [q.text() for q in self.epilogue.quant]} if self.epilogue.quant else {}),
            **({"gelu_constants": list(self.epilogue.gelu_constants)} if self.epilogue.gelu_constants else {}),
            "conv": None if self.conv is None else asdict(self.conv),
            "variant": self.variant,
            "packed": digest.hexdigest() if self.packed is not None else None,
        }


@dataclass(frozen=True)
class Choice:
    """The format ``select`` (or ``--tune``) chose for a layer, and why."""

    format: str
    reason: str
    speedup: float | None = None  # predicted (measured with --tune) vs ORT dense


@dataclass(frozen=True)
class Tuning:
    """What ``--tune`` measured for a layer: microseconds per ``format|variant`` and ``dense``."""

    variant: str
    measured_us: dict[str, float]
    cached: bool = False


@dataclass(frozen=True)
class QdqOperands:
    """A QDQ model's float MatMul as the integers behind it: ``DequantizeLinear(q, x_scale, zero_point)`` times a
    weight dequantized from int8 (``w_int`` [N, K], integer-valued float32), which the int8 kernels run as
    ``float32(sum(q - zero_point) * w_int) * scale`` (``scale`` = x_scale * w_scale as float32, one per output)."""

    q: ir.Value = field(compare=False)
    zero_point: ir.Value | None = field(compare=False)
    signed: bool
    w_int: np.ndarray = field(compare=False, repr=False)
    scale: np.ndarray = field(compare=False, repr=False)
    shift_passes: int = 2  # passes over an int8 q to shift it to uint8 (1: requantized from its float input)
    sharing: int = 1  # QDQ MatMuls reading the same q (they share its shift)


@dataclass(frozen=True)
class Layer:
    """A MatMul, Gemm or Conv with a constant weight (``skip`` says why it cannot become sparse; "" when it can).

    ``w`` is W[N, K] float32 (docs/internals.md, "Weight orientation"): Gemm's alpha folded in, beta * C as ``bias``,
    a Conv's weight reshaped to [Cout, Cin*kh*kw] with its static ``geom``.
    """

    name: str  # unique, safe for initializer names
    op: str
    weight_name: str
    w: np.ndarray = field(compare=False, repr=False)
    node: ir.Node = field(compare=False, repr=False)  # its node in the graph (onnx_ir)
    bias: np.ndarray | None = field(default=None, compare=False, repr=False)
    trans_a: bool = False
    rows: int | None = None  # M when the activation's leading dims are static (conv: batch x output pixels)
    skip: str = ""
    nonfinite: int = 0  # NaN/Inf entries in the weight: compile refuses them, inspect reports them
    profile: WeightProfile | None = field(default=None, repr=False)
    geom: ConvGeometry | None = None
    reorder: int = 0  # conv: elements ORT would convert to/from NCHWc around it if it became sparse (passes/layout)
    absorbed: tuple[str, ...] = ()  # op types of ORT's nodes after the MatMul its kernel takes in (passes/absorbed)
    choice: Choice | None = None
    tuning: Tuning | None = None
    qdq: QdqOperands | None = field(default=None, compare=False, repr=False)  # a QDQ MatMul's integers (int8 kernels)
    kernel: Kernel | None = None
    weight_dtype: str = "float32"  # the weight's type in the model (int8/uint8: quantized; the kernels compute float32)
    float_exact: bool = False  # a MatMul/ConvInteger whose sums float32 computes exactly (passes/integer.py)
    unfused: tuple[str, ...] = ()  # why the nodes after a sparse layer stayed out of its epilogue (inspect)

    @property
    def integer(self) -> bool:
        """A quantized layer whose integer sums the kernel computes exactly (MatMul/ConvInteger, QLinearMatMul/Conv)."""
        return self.op in INTEGER_OPS

    @property
    def n(self) -> int:
        return int(self.w.shape[0])

    @property
    def k(self) -> int:
        return int(self.w.shape[1])

    @property
    def format(self) -> str:
        return self.choice.format if self.choice is not None else "dense"

    def to_json(self, detail: bool = False) -> dict[str, Any]:
        """The manifest's record of the layer; ``detail`` adds the sparsity profile and the fusion notes (inspect)."""
        c = self.choice or Choice("dense", "")
        p = self.profile
        rec: dict[str, Any] = {
            "name": self.name,
            "op": self.op,
            "shape": [self.n, self.k],
            "format": c.format,
            "weight_dtype": self.weight_dtype,
            "density": round(p.density, 6) if p else None,
            "reason": c.reason,
        }
        if c.speedup is not None:
            rec["measured_speedup" if self.tuning else "predicted_speedup"] = round(c.speedup, 3)
        if self.kernel is not None:
            rec.update(kernel=self.kernel.symbol, epilogue=list(self.kernel.epilogue.steps), region=self.kernel.region)
        if self.tuning is not None:
            rec["tuning"] = {"variant": self.tuning.variant, "measured_us": self.tuning.measured_us}
            if self.kernel is not None and self.tuning.variant:
                rec["variant"] = self.tuning.variant
        if detail:
            rec.update(
                nm={k: round(v, 4) for k, v in p.nm.items()} if p else {},
                blocks={k: round(v, 4) for k, v in p.block_fill.items()} if p else {},
                zero_rows=p.zero_rows if p else None,
                zero_cols=p.zero_cols if p else None,
                unfused=list(self.unfused),
            )
        return rec
