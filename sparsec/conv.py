"""The geometry of a 2-D convolution layer in the NCHW layout ORT uses (docs/internals.md, "Convolutions").

A sparse conv computes ``Y[b, co, oh, ow] = sum_k W[co, k] * col[b, k, oh, ow]`` with ``k = (ci*kh + r)*kw + s``
(ONNX's weight [Cout, Cin, kh, kw] reshaped to W[N=Cout, K=Cin*kh*kw]) and
``col[b, k, oh, ow] = X[b, ci, oh*sh - pt + r*dh, ow*sw - pl + s*dw]`` (zero outside X): im2col. A *pointwise*
conv (1x1, stride 1, no padding) needs no im2col: X viewed as [B, Cin, H*W] is already ``col``.

A *dynamic* geometry (symbolic height and width in the model) has its spatial size read from X at run time: the
kernel takes X as [B, C, H, W] and derives OH and OW; ``H`` and ``W`` then hold the size formats are ranked at
(``--dim`` values, else an assumption), and the node tells the EP ``H=0;W=0``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConvGeometry:
    """Static geometry of one Conv (group=1): input channels and spatial size, kernel, strides, dilations, pads."""

    C: int  # input channels
    H: int
    W: int
    kh: int = 1
    kw: int = 1
    sh: int = 1
    sw: int = 1
    dh: int = 1
    dw: int = 1
    pt: int = 0  # pads: top, left, bottom, right
    pl: int = 0
    pb: int = 0
    pr: int = 0
    dynamic: bool = False  # H and W come from X at run time (H, W above: the size assumed for ranking)

    def __post_init__(self) -> None:
        for name in ("C", "H", "W", "kh", "kw", "sh", "sw", "dh", "dw"):
            if getattr(self, name) < 1:
                raise ValueError(f"conv geometry: {name}={getattr(self, name)} must be >= 1")
        for name in ("pt", "pl", "pb", "pr"):
            if getattr(self, name) < 0:
                raise ValueError(f"conv geometry: {name}={getattr(self, name)} must be >= 0")
        if self.OH < 1 or self.OW < 1:
            raise ValueError(f"conv geometry: empty output {self.OH}x{self.OW}")

    @property
    def OH(self) -> int:  # noqa: N802 (the usual name)
        return (self.H + self.pt + self.pb - self.dh * (self.kh - 1) - 1) // self.sh + 1

    @property
    def OW(self) -> int:  # noqa: N802
        return (self.W + self.pl + self.pr - self.dw * (self.kw - 1) - 1) // self.sw + 1

    @property
    def K(self) -> int:  # noqa: N802
        """Length of one im2col column: the W[N, K] reduction size."""
        return self.C * self.kh * self.kw

    @property
    def P(self) -> int:  # noqa: N802
        """Output pixels per image."""
        return self.OH * self.OW

    @property
    def pointwise(self) -> bool:
        """1x1, stride 1, no padding: X viewed as [B, C, H*W] is the im2col matrix itself."""
        return (self.kh, self.kw, self.sh, self.sw, self.pt, self.pl, self.pb, self.pr) == (1, 1, 1, 1, 0, 0, 0, 0)


ASSUMED_HW = 32  # spatial size a dynamic conv's formats are ranked at when no --dim gives one


def runtime_geometry(
    C: int, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, pads: tuple[int, int, int, int]
) -> ConvGeometry:  # noqa: N803, E501
    """A dynamic geometry sized at ASSUMED_HW (grown to the kernel's extent where that is larger)."""
    pt, pl, pb, pr = pads
    h = max(ASSUMED_HW, dh * (kh - 1) + 1 - pt - pb)
    w = max(ASSUMED_HW, dw * (kw - 1) + 1 - pl - pr)
    return ConvGeometry(C, h, w, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, dynamic=True)


def same_pads(size: int, k: int, s: int, d: int, upper: bool) -> tuple[int, int]:
    """ONNX auto_pad SAME_UPPER / SAME_LOWER: output ceil(size/s), extra pad at the end (upper) or the start."""
    total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
    small = total // 2
    return (small, total - small) if upper else (total - small, small)
