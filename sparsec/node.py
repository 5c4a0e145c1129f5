"""Encoding of sparsec nodes: ONNX ``com.microsoft.EPContext`` nodes that only the sparsec EP claims.

ORT knows the EPContext schema, so the rewritten model stays a valid ONNX model for ORT; a session without
the sparsec EP refuses it loudly instead of silently running something else. A layer's ``Kernel`` travels as a
flat ``key=value;...`` string in ``ep_cache_context`` that the C++ EP parses (docs/internals.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .conv import ConvGeometry, runtime_geometry
from .layer import Epilogue, Kernel, Quant

if TYPE_CHECKING:
    import onnx
    import onnx_ir as ir

EP_NAME = "SparsecEP"
DOMAIN = "com.microsoft"
OP_TYPE = "EPContext"
CONV_KEYS = ("C", "H", "W", "kh", "kw", "sh", "sw", "dh", "dw", "pt", "pl", "pb", "pr")


def _text(v: object) -> str:
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return repr(v)
    return str(v)


def encode(k: Kernel) -> str:
    """The ``ep_cache_context`` string: what the EP needs of the kernel (a matmul has no ``op`` or conv keys)."""
    e = k.epilogue
    parts: list[tuple[str, object]] = [
        ("sparsec", 1),
        ("kernel", k.symbol),
        ("format", k.format),
        ("K", k.K),
        ("N", k.N),
        ("bias", e.bias),
        ("residual", e.residual),
        ("act", e.act),
        ("clip_min", float(e.clip_min)),
        ("clip_max", float(e.clip_max)),
        ("region", k.region),
    ]
    if e.scale:  # int8 kernels only; absent otherwise (earlier artifacts' bytes unchanged)
        parts.append(("scale", e.scale))
    if e.quant:  # compiled into the kernel; the EP does not read it
        parts.append(("quant", "|".join(q.text() for q in e.quant)))
    if e.gelu_constants:
        parts.append(("gelu_constants", "|".join(repr(v) for v in e.gelu_constants)))
    if k.conv is not None:
        parts.append(("op", "conv"))
        runtime = {"H": 0, "W": 0} if k.conv.dynamic else {}  # the EP reads them from X
        parts += [(key, runtime.get(key, getattr(k.conv, key))) for key in CONV_KEYS]
    return ";".join(f"{key}={_text(v)}" for key, v in parts)


def decode(text: str) -> Kernel:
    """The kernel an ``ep_cache_context`` string describes (no packed arrays); ValueError when it is not sparsec's."""
    kv = dict(p.split("=", 1) for p in text.split(";") if "=" in p)
    if kv.get("sparsec") != "1":
        raise ValueError("not a sparsec node configuration")
    op = kv.get("op", "matmul")
    if op not in ("matmul", "conv"):
        raise ValueError(f"unknown op {op!r}")
    epilogue = Epilogue(
        scale=int(kv.get("scale", 0)),
        bias=kv.get("bias") == "1",
        residual=kv.get("residual") == "1",
        act=kv.get("act", "none"),
        clip_min=float(kv.get("clip_min", 0.0)),
        clip_max=float(kv.get("clip_max", 0.0)),
        quant=tuple(Quant.parse(q) for q in kv["quant"].split("|")) if kv.get("quant") else (),
        gelu_constants=tuple(float(v) for v in kv["gelu_constants"].split("|")) if kv.get("gelu_constants") else (),
    )
    conv = None
    if op == "conv":
        c, h, w, kh, kw, sh, sw, dh, dw, *pads = (int(kv[key]) for key in CONV_KEYS)
        if h == w == 0:  # sized at run time
            conv = runtime_geometry(c, kh, kw, sh, sw, dh, dw, (pads[0], pads[1], pads[2], pads[3]))
        else:
            conv = ConvGeometry(c, h, w, kh, kw, sh, sw, dh, dw, pads[0], pads[1], pads[2], pads[3])
    return Kernel(
        symbol=kv["kernel"],
        format=kv["format"],
        K=int(kv["K"]),
        N=int(kv["N"]),
        epilogue=epilogue,
        conv=conv,
        region=int(kv.get("region", 0)),
    )


def attributes(k: Kernel, layer: str, notes: str = "") -> dict[str, object]:
    """The EPContext attributes of a sparsec node, in the order they are written."""
    return {
        "source": EP_NAME,
        "embed_mode": 1,
        "partition_name": layer,
        "ep_cache_context": encode(k),
        "notes": notes or f"sparsec {k.format} layer {layer}",
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


def read(node: ir.Node) -> Kernel | None:
    """The kernel of a sparsec node (an ``onnx_ir.Node``), or None for any other node."""
    if node.op_type != OP_TYPE or node.domain != DOMAIN:
        return None
    attrs = {name: a.value for name, a in node.attributes.items()}
    if not is_sparsec(node.op_type, node.domain, attrs):
        return None
    ctx = attrs["ep_cache_context"]
    return decode(ctx.decode() if isinstance(ctx, bytes) else str(ctx))


def read_proto(node: onnx.NodeProto) -> Kernel:
    """The kernel of a sparsec node in a protobuf model (one of :func:`sparse_protos`)."""
    return decode(next(a.s.decode() for a in node.attribute if a.name == "ep_cache_context"))


def sparse_protos(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The sparsec nodes of a protobuf model's main graph, in graph order."""
    import onnx

    out = []
    for n in model.graph.node:
        if n.op_type == OP_TYPE and n.domain == DOMAIN:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            if is_sparsec(n.op_type, n.domain, attrs):
                out.append(n)
    return out


def layer_name(node: ir.Node) -> str:
    """The layer a sparsec node was made from (its ``partition_name``)."""
    a = node.attributes.get("partition_name")
    return str(a.value) if a is not None else str(node.name)
