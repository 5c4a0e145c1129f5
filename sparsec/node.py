"""Encoding of sparsec nodes: ONNX ``com.microsoft.EPContext`` nodes that only the sparsec EP claims.

ORT knows the EPContext schema, so the rewritten model stays a valid ONNX model for ORT; a session without
the sparsec EP refuses it loudly instead of silently running something else. The layer's configuration is a
flat ``key=value;...`` string in ``ep_cache_context`` that the C++ EP parses (docs/internals.md).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .conv import ConvGeometry

EP_NAME = "SparsecEP"
DOMAIN = "com.microsoft"
OP_TYPE = "EPContext"
ACTIVATIONS = ("none", "relu", "gelu", "sigmoid", "clip", "silu", "hardswish")
OPS = ("matmul", "conv")
CONV_KEYS = ("C", "H", "W", "kh", "kw", "sh", "sw", "dh", "dw", "pt", "pl", "pb", "pr")


@dataclass(frozen=True)
class SparseNodeInfo:
    """What the EP needs to run one sparse layer: ``Y = act(X @ W^T + bias + residual)``.

    ``op="conv"`` makes it a 2-D NCHW convolution (X [B, C, H, W] -> Y [B, N, OH, OW], K = C*kh*kw) with the
    geometry in the conv keys; a matmul node's encoding has neither ``op`` nor those keys (the MatMul contract).
    """

    kernel: str
    format: str
    K: int
    N: int
    bias: bool = False
    residual: bool = False
    act: str = "none"
    clip_min: float = 0.0
    clip_max: float = 0.0
    region: int = 0
    op: str = "matmul"
    C: int = 0
    H: int = 0
    W: int = 0
    kh: int = 0
    kw: int = 0
    sh: int = 0
    sw: int = 0
    dh: int = 0
    dw: int = 0
    pt: int = 0
    pl: int = 0
    pb: int = 0
    pr: int = 0

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown op {self.op!r}")
        if self.op == "conv" and self.geometry().K != self.K:
            raise ValueError(f"conv geometry gives K={self.geometry().K}, config says K={self.K}")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.act!r}")
        if not self.kernel.isidentifier():
            raise ValueError(f"kernel symbol {self.kernel!r} is not a C identifier")

    def encode(self) -> str:
        """The ``ep_cache_context`` string."""
        parts = ["sparsec=1"]
        for f in fields(self):
            if self.op == "matmul" and (f.name == "op" or f.name in CONV_KEYS):
                continue
            v = getattr(self, f.name)
            if isinstance(v, bool):
                v = int(v)
            elif isinstance(v, float):
                v = repr(v)
            parts.append(f"{f.name}={v}")
        return ";".join(parts)

    @classmethod
    def decode(cls, text: str) -> SparseNodeInfo:
        """Parse an ``ep_cache_context`` string; raises ValueError when it is not a sparsec one."""
        kv = dict(p.split("=", 1) for p in text.split(";") if "=" in p)
        if kv.get("sparsec") != "1":
            raise ValueError("not a sparsec node configuration")
        conv = {
            "K": int,
            "N": int,
            "bias": lambda s: s == "1",
            "residual": lambda s: s == "1",
            "clip_min": float,
            "clip_max": float,
            "region": int,
            **{k: int for k in CONV_KEYS},
        }
        args = {f.name: conv.get(f.name, str)(kv[f.name]) for f in fields(cls) if f.name in kv}
        return cls(**args)

    def geometry(self) -> ConvGeometry:
        """The conv geometry (``op == "conv"`` only); raises ValueError when the keys are inconsistent."""
        return ConvGeometry(**{k: getattr(self, k) for k in CONV_KEYS})

    @classmethod
    def for_conv(cls, kernel: str, format: str, N: int, geom: ConvGeometry, **kw: object) -> SparseNodeInfo:  # noqa: A002, N803
        """A conv node's config from its geometry."""
        keys = {k: getattr(geom, k) for k in CONV_KEYS}
        return cls(kernel=kernel, format=format, K=geom.K, N=N, op="conv", **keys, **kw)  # type: ignore[arg-type]

    def with_updates(self, **changes: object) -> SparseNodeInfo:
        """A copy with some fields changed (fusion and partitioning update the config)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(changes)
        return SparseNodeInfo(**data)  # type: ignore[arg-type]


def node_attributes(info: SparseNodeInfo, layer: str, notes: str = "") -> dict[str, object]:
    """The EPContext attributes of a sparsec node (for onnx.helper.make_node or onnx_ir)."""
    return {
        "source": EP_NAME,
        "embed_mode": 1,
        "partition_name": layer,
        "ep_cache_context": info.encode(),
        "notes": notes or f"sparsec {info.format} layer {layer}",
    }


def is_sparsec(op_type: str, domain: str, attrs: dict[str, object]) -> bool:
    """Whether a node (given by op type, domain and attribute values) is a sparsec node."""
    ctx = attrs.get("ep_cache_context", "")
    if isinstance(ctx, bytes):
        ctx = ctx.decode()
    return (
        op_type == OP_TYPE
        and domain == DOMAIN
        and attrs.get("source") in (EP_NAME, EP_NAME.encode())
        and isinstance(ctx, str)
        and ctx.startswith("sparsec=1")
    )
