"""Mutations for the fuzzers: raw byte edits of any file, and structured edits of a compiled model's sparsec
nodes (packed arrays, configuration, inputs) that a manifest re-seal makes look authentic to the loader."""

from __future__ import annotations

import random

import numpy as np
import onnx
from onnx import numpy_helper

from sparsec.formats import get_format
from sparsec.layer import Kernel
from sparsec.node import decode, is_sparsec

_INT32 = (0, 1, -1, 2, 255, 256, 65535, 2**31 - 1, -(2**31), 2**30)
_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits: bit flips, interesting bytes or int32s, truncation, insertion, deletion, copies."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            buf.extend(rng.randbytes(rng.randint(1, 16)))
            continue
        op = rng.randrange(7)
        at = rng.randrange(len(buf))
        if op == 0:
            buf[at] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[at] = rng.choice(_BYTES)
        elif op == 2:
            value = rng.choice(_INT32) & 0xFFFFFFFF
            buf[at : at + 4] = value.to_bytes(4, "little")
        elif op == 3:
            del buf[at:]
        elif op == 4:
            buf[at:at] = rng.randbytes(rng.randint(1, 32))
        elif op == 5:
            del buf[at : at + rng.randint(1, 64)]
        else:
            n = rng.randint(1, 64)
            buf[at:at] = buf[rng.randrange(len(buf)) :][:n]
    return bytes(buf)


def sparse_info(node: onnx.NodeProto) -> Kernel | None:
    """The kernel of a sparsec node of a protobuf model, or None."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if not is_sparsec(node.op_type, node.domain, attrs):
        return None
    ctx = attrs["ep_cache_context"]
    return decode(ctx.decode() if isinstance(ctx, bytes) else str(ctx))


def _array_inputs(node: onnx.NodeProto) -> list[str]:
    info = sparse_info(node)
    assert info is not None
    return list(node.input[1 : 1 + len(get_format(info.format).array_names)])


def _edit_array(t: onnx.TensorProto, rng: random.Random) -> str:
    a = numpy_helper.to_array(t).copy()
    how = rng.randrange(4)
    if how == 0 and a.size:  # one entry gets an out-of-range or extreme value
        flat = a.reshape(-1)
        i = rng.randrange(flat.size)
        if a.dtype.kind == "f":
            flat[i] = rng.choice([np.nan, np.inf, -np.inf, 3e38, -0.0, 1.0])
        else:
            info = np.iinfo(a.dtype)
            flat[i] = int(np.clip(rng.choice(_INT32), info.min, info.max))
        desc = f"entry {i} of {t.name}"
    elif how == 1:  # shorter or longer
        flat = a.reshape(-1)
        n = max(0, flat.size + rng.choice([-3, -1, 1, 5]))
        a = np.resize(flat, n) if n else flat[:0]
        desc = f"{t.name} resized to {n}"
    elif how == 2:  # another dtype
        dt = rng.choice([np.float32, np.int32, np.int64, np.uint8, np.float16])
        a = a.astype(dt)
        desc = f"{t.name} cast to {np.dtype(dt).name}"
    else:  # shuffled (monotonic pointers no more)
        flat = a.reshape(-1).copy()
        rng.shuffle(flat)  # type: ignore[arg-type]
        a = flat.reshape(a.shape)
        desc = f"{t.name} shuffled"
    t.CopyFrom(numpy_helper.from_array(a, t.name))
    return desc


def _edit_config(node: onnx.NodeProto, rng: random.Random) -> str:
    for attr in node.attribute:
        if attr.name != "ep_cache_context":
            continue
        parts = attr.s.decode().split(";")
        i = rng.randrange(1, len(parts))
        key = parts[i].split("=", 1)[0]
        value = rng.choice(
            [
                "0",
                "-1",
                "1",
                "17",
                "2147483647",
                "99999999999",
                "csr",
                "bsr:4x4",
                "bsr:0x3",
                "nm:2:4",
                "nm:5:4",
                "gelu",
                "bogus",
                "",
                "nan",
                "1e309",
                "sparsec_k0",
                "sparsec_k1",
                "../../x",
            ]
        )
        if rng.random() < 0.15:
            del parts[i]
            desc = f"config key {key} removed"
        else:
            parts[i] = f"{key}={value}"
            desc = f"config {key}={value!r}"
        attr.s = ";".join(parts).encode()
        return desc
    return "no config"


def mutate_model(model: onnx.ModelProto, rng: random.Random) -> str:
    """Edit one sparsec node of ``model`` in place; returns what was done."""
    nodes = [n for n in model.graph.node if sparse_info(n) is not None]
    node = rng.choice(nodes)
    inits = {t.name: t for t in model.graph.initializer}
    how = rng.randrange(5)
    if how <= 1:
        return _edit_array(inits[rng.choice(_array_inputs(node))], rng)
    if how == 2:
        return _edit_config(node, rng)
    if how == 3 and len(node.input) > 1:
        i = rng.randrange(1, len(node.input))
        name = node.input[i]
        del node.input[i]
        return f"input {name} removed from {node.name}"
    other = rng.choice(list(inits))
    node.input.append(other)
    return f"extra input {other} on {node.name}"


def _edit_node(model: onnx.ModelProto, rng: random.Random) -> str:
    g = model.graph
    node = rng.choice(list(g.node))
    values = [v.name for v in g.input] + [t.name for t in g.initializer] + [o for n in g.node for o in n.output]
    how = rng.randrange(4)
    if how == 0:
        g.node.remove(node)
        return f"node {node.name or node.op_type} removed"
    if how == 1 and node.input:
        i = rng.randrange(len(node.input))
        node.input[i] = rng.choice(values)
        return f"input {i} of {node.name or node.op_type} rewired to {node.input[i]}"
    if how == 2 and node.attribute:
        a = rng.choice(list(node.attribute))
        if a.type == onnx.AttributeProto.INT:
            a.i = rng.choice([0, 1, 2, -1, 2**31])
        elif a.type == onnx.AttributeProto.FLOAT:
            a.f = rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e30])
        return f"attribute {a.name} of {node.name or node.op_type} changed"
    dup = onnx.NodeProto()
    dup.CopyFrom(node)
    g.node.append(dup)
    return f"node {node.name or node.op_type} duplicated"


def _edit_input_dims(model: onnx.ModelProto, rng: random.Random) -> str:
    vi = rng.choice(list(model.graph.input) + list(model.graph.output))
    dims = vi.type.tensor_type.shape.dim
    if not dims or rng.random() < 0.2:
        vi.type.tensor_type.elem_type = rng.choice([onnx.TensorProto.FLOAT16, onnx.TensorProto.INT64, 0])
        return f"{vi.name} element type changed"
    d = rng.choice(list(dims))
    if rng.random() < 0.5:
        d.dim_value = rng.choice([0, 1, 7, 2**31 - 1, 2**31, 2**62])
    else:
        d.dim_param = rng.choice(["batch", "seq", "other", ""])
    return f"a dimension of {vi.name} changed"


def mutate_source_model(model: onnx.ModelProto, rng: random.Random) -> str:
    """Edit a user model in place, keeping valid protobuf: initializers, nodes, attributes, dims, opsets."""
    how = rng.randrange(5)
    if how == 0:
        return _edit_array(rng.choice(list(model.graph.initializer)), rng)
    if how == 1:
        return _edit_node(model, rng)
    if how == 2:
        return _edit_input_dims(model, rng)
    if how == 3:
        model.opset_import[0].version = rng.choice([1, 6, 7, 13, 21, 23, 24, 30, 10**6])
        return f"opset {model.opset_import[0].version}"
    model.ir_version = rng.choice([0, 1, 3, 7, 10, 11, 12, 99])
    return f"IR version {model.ir_version}"
