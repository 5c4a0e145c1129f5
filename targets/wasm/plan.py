"""Split a rewritten model into the steps the JS runner walks (internals.md, "WebAssembly artifact").

onnxruntime-web cannot run sparsec nodes, so the graph, in topological order, becomes a list of steps: a *dense*
step is a maximal run of consecutive ordinary nodes saved as its own ONNX model (``dense_<i>.onnx``, run by
onnxruntime-web); a *sparse* step is one sparsec node run by its kernel in ``kernels.wasm``, with its packed
weights (and constant bias) stored once in ``weights.bin``; a *zipmap* step is an ai.onnx.ml ZipMap giving a graph
output, run by the JS runner itself (onnxruntime-web returns tensors only: "Reading data from non-tensor typed value
is not supported"; skl2onnx classifiers end in one). ``plan.json`` lists the steps with their input and
output value names; the runner keeps a name -> tensor map.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
from onnx import helper

from sparsec import node as sparse_node
from sparsec.artifact import type_text
from sparsec.errors import SparsecError
from sparsec.formats import get_format
from sparsec.layer import Kernel
from sparsec.passes.graph import constant, hide_map_types, reads, stable_topo_sort

from ..simd.templates.quantize import SYMBOL as QUANTIZE_SYMBOL

PLAN = "plan.json"
WEIGHTS = "weights.bin"
ALIGN = 64  # byte alignment of every array in weights.bin
DLPACK = {"float32": (2, 32), "int32": (0, 32), "uint8": (1, 8)}  # numpy dtype -> (DLDataTypeCode, bits)
PLAN_VERSION = 2  # 2: sparse steps list "args" (run-time ones in "runtime_args") and "x_dtype"; quantize steps


@dataclass
class Plan:
    steps: list[dict[str, Any]] = field(default_factory=list)
    weights: dict[str, dict[str, Any]] = field(default_factory=dict)
    blob: bytearray = field(default_factory=bytearray)
    segments: dict[str, onnx.ModelProto] = field(default_factory=dict)

    def add_weight(self, name: str, value: np.ndarray) -> None:
        if name in self.weights:
            return
        dtype = str(value.dtype)
        if dtype not in DLPACK:
            raise SparsecError(f"wasm target: packed array {name} has dtype {dtype}, expected one of {sorted(DLPACK)}")
        self.blob.extend(b"\0" * (-len(self.blob) % ALIGN))
        data = np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<"), copy=False).tobytes()
        code, bits = DLPACK[dtype]
        self.weights[name] = {
            "dtype": dtype,
            "shape": [int(d) for d in value.shape],
            "offset": len(self.blob),
            "nbytes": len(data),
            "code": code,
            "bits": bits,
        }
        self.blob.extend(data)


@dataclass
class _Graph:
    """The rewritten model read with onnx-ir (values, constants, reads) beside its protobuf nodes (segments are
    written from those, as onnxruntime-web loads them)."""

    proto: onnx.ModelProto
    nodes: list[tuple[ir.Node, onnx.NodeProto]]
    values: dict[str, ir.Value]

    def dtype(self, name: str) -> int:
        v = self.values.get(name)
        return int(v.dtype) if v is not None and v.dtype is not None else onnx.TensorProto.FLOAT

    def constant(self, name: str) -> np.ndarray | None:
        return constant(self.values.get(name))


def _read(model: onnx.ModelProto) -> _Graph:
    """``model`` in topological order (a copy: it is not modified), its onnx-ir view and its value names."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    m = ir.from_proto(hide_map_types(model)[0])  # a ZipMap's map type: onnx-ir cannot read it
    pairs = dict(zip(list(m.graph), list(model.graph.node), strict=True))
    stable_topo_sort(m.graph)
    nodes = [(n, pairs[n]) for n in m.graph]
    del model.graph.node[:]
    model.graph.node.extend(p for _, p in nodes)
    values: dict[str, ir.Value] = {str(v.name): v for v in [*m.graph.inputs, *m.graph.initializers.values()]}
    values.update((str(o.name), o) for n, _ in nodes for o in n.outputs)
    return _Graph(model, nodes, values)


def _value_info(name: str, index: _Graph, known: dict[str, onnx.ValueInfoProto]) -> onnx.ValueInfoProto:
    if name in known:
        return known[name]
    elem = index.dtype(name)  # every value next to a sparsec node is float32
    return helper.make_tensor_value_info(name, elem, None)


def _segment(
    model: onnx.ModelProto, nodes: list[onnx.NodeProto], inputs: list[str], outputs: list[str], index: _Graph
) -> onnx.ModelProto:
    g = model.graph
    known = {v.name: v for v in list(g.input) + list(g.value_info) + list(g.output)}
    produced = {o for n in nodes for o in n.output}
    ours = {id(p) for p in nodes}
    read = {str(v.name) for n, p in index.nodes if id(p) in ours for v in reads(n)}
    inits = [t for t in g.initializer if t.name in read and t.name not in produced]
    graph = helper.make_graph(
        nodes,
        f"{g.name or 'graph'}_dense",
        [_value_info(n, index, known) for n in inputs],
        [_value_info(n, index, known) for n in outputs],
        initializer=inits,
        value_info=[v for v in g.value_info if v.name in produced and v.name not in outputs],
    )
    used = {n.domain for n in nodes} | {"", "ai.onnx"}  # the sparsec nodes' com.microsoft only when still used
    opsets = [o for o in model.opset_import if o.domain in used]
    seg = helper.make_model(graph, opset_imports=opsets, producer_name="sparsec")
    seg.ir_version = model.ir_version
    return seg


def _sparse_step(node: onnx.NodeProto, info: Kernel, index: _Graph, plan: Plan) -> dict[str, Any]:
    """A sparsec node's step: its kernel arguments between X and the residual (``args``, internals.md "Kernel
    ABI") are constants stored in weights.bin, except an int8 kernel's zero point and scale, which may be run-time
    values (a DynamicQuantizeLinear's outputs)."""
    fmt = get_format(info.format)
    e = info.epilogue
    int8 = fmt.family == "int8"
    # (dtype, may be computed at run time) of each argument between X and the residual
    kinds = (
        [("", False)] * len(fmt.array_names) + [("uint8", True)] * int(int8) + [("float32", True)] * int(e.scale > 0)
    )
    kinds += [("float32", False)] * int(e.bias)
    args = list(node.input[1 : 1 + len(kinds)])
    runtime: dict[str, str] = {}
    for name, (dtype, may_vary) in zip(args, kinds, strict=True):
        value = index.constant(name)
        if value is not None:  # a scalar zero point or scale as the kernel's [1] buffer
            plan.add_weight(name, np.atleast_1d(value))
        elif may_vary:
            runtime[name] = dtype
        else:
            raise SparsecError(f"wasm target: {node.name}: packed input {name} is not a constant")
    step: dict[str, Any] = {
        "kind": "sparse",
        "name": node.name,
        "kernel": f"__tvm_ffi_{info.symbol}",
        "format": info.format,
        "op": "conv" if info.conv is not None else "matmul",
        "K": info.K,
        "N": info.N,
        "x": node.input[0],
        "x_dtype": "uint8" if int8 else "float32",
        "args": args,
        "runtime_args": runtime,
        "residual": node.input[1 + len(kinds)] if e.residual else None,
        "output": node.output[0],
    }
    if info.conv is not None:
        g = info.conv
        if g.dynamic:  # sized at run time: the runner derives OH, OW from X as the kernel does
            step["conv"] = {"C": g.C, "H": 0, "W": 0, **{k: getattr(g, k) for k in RUNTIME_KEYS}}
        else:
            step["conv"] = {"C": g.C, "H": g.H, "W": g.W, "OH": g.OH, "OW": g.OW}
    return step


RUNTIME_KEYS = ("kh", "kw", "sh", "sw", "dh", "dw", "pt", "pl", "pb", "pr")


def is_zipmap(node: Any) -> bool:
    """An ai.onnx.ml ZipMap (onnx-ir or protobuf node)."""
    return node.op_type == "ZipMap" and node.domain == "ai.onnx.ml"


def _zipmap_step(node: onnx.NodeProto) -> dict[str, Any]:
    """The step of a ZipMap whose sequence of maps is a graph output."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if "classlabels_int64s" in attrs:
        labels: list[Any] = [int(v) for v in attrs["classlabels_int64s"]]
        if any(abs(v) > 2**53 for v in labels):
            raise SparsecError(f"wasm target: ZipMap {node.name!r}: labels beyond 2**53 are not exact in JavaScript")
        key = "int64"
    else:
        labels = [v.decode() for v in attrs.get("classlabels_strings", [])]
        key = "string"
    return {
        "kind": "zipmap",
        "name": node.name,
        "input": node.input[0],
        "output": node.output[0],
        "key": key,
        "labels": labels,
    }


def _quantize_steps(index: _Graph, graph_outputs: set[str]) -> tuple[dict[int, dict[str, Any]], set[int]]:
    """The DynamicQuantizeLinear nodes the runner computes itself (``quantize`` steps, on the kernel of
    targets/simd/templates/quantize.py): those whose outputs only sparse steps read, the scale possibly through a
    Mul by a constant (the int8 kernel's ``x_scale * w_scale``, which the step computes in float32 too).
    {id(node proto): step}, and the ids of those Muls' protos."""
    readers: dict[str, list[ir.Node]] = {}
    for n, _ in index.nodes:
        for v in reads(n):  # subgraphs' reads of outer values included
            readers.setdefault(str(v.name), []).append(n)

    def sparse_only(name: str) -> bool:
        return name not in graph_outputs and all(sparse_node.read(r) is not None for r in readers.get(name, []))

    steps: dict[int, dict[str, Any]] = {}
    muls: set[int] = set()
    protos = {id(n): p for n, p in index.nodes}
    for n, p in index.nodes:
        x = n.inputs[0] if n.inputs else None
        if n.op_type != "DynamicQuantizeLinear" or n.domain not in ("", "ai.onnx") or len(p.output) != 3 or x is None:
            continue
        y, y_scale, y_zero = (str(o.name) for o in n.outputs)
        if not readers.get(y) or not sparse_only(y) or not sparse_only(y_zero) or y_scale in graph_outputs:
            continue
        scales, taken = [], []
        for r in readers.get(y_scale, []):
            if sparse_node.read(r) is not None:
                continue
            if r.op_type != "Mul" or r.domain not in ("", "ai.onnx") or len(r.inputs) != 2:
                break
            other = r.inputs[1] if r.inputs[0] is not None and str(r.inputs[0].name) == y_scale else r.inputs[0]
            value = index.constant(str(other.name)) if other is not None else None
            out = str(r.outputs[0].name)
            if value is None or value.dtype != np.float32:
                break
            if not readers.get(out) or not sparse_only(out):
                break
            scales.append({"output": out, "values": [float(v) for v in value.reshape(-1)], "dims": list(value.shape)})
            taken.append(id(protos[id(r)]))
        else:
            steps[id(p)] = {
                "kind": "quantize",
                "name": p.name,
                "kernel": f"__tvm_ffi_{QUANTIZE_SYMBOL}",
                "x": str(x.name),
                "outputs": [y, y_scale, y_zero],
                "scales": scales,
            }
            muls.update(taken)
    return steps, muls


def make_plan(model: onnx.ModelProto) -> Plan:
    """The steps of ``model`` (a rewritten model; it is not modified)."""
    index = _read(model)
    model = index.proto
    g = model.graph
    runs: list[tuple[str, list[tuple[ir.Node, onnx.NodeProto]]]] = []
    graph_outputs = {o.name for o in g.output}
    quantize, quantize_muls = _quantize_steps(index, graph_outputs)
    for pair in index.nodes:
        if id(pair[1]) in quantize_muls:  # computed by its quantize step
            continue
        kind = "sparse" if sparse_node.read(pair[0]) is not None else "dense"
        if is_zipmap(pair[0]) and pair[1].output[0] in graph_outputs:
            kind = "zipmap"
        if id(pair[1]) in quantize:
            kind = "quantize"
        if runs and kind == "dense" and runs[-1][0] == "dense":
            runs[-1][1].append(pair)
        else:
            runs.append((kind, [pair]))
    graph_inputs = {i.name for i in g.input} - {t.name for t in g.initializer}
    later_reads: list[set[str]] = []
    needed = {o.name for o in g.output}
    for _, pairs in reversed(runs):  # values read by this run or any later one, or graph outputs
        later_reads.append(set(needed))
        needed |= {str(v.name) for n, _ in pairs for v in reads(n)}
    later_reads.reverse()
    # Constant nodes' values are copied into each segment that reads them rather than passed between segments
    # (every tensor crossing a segment boundary costs a copy out of onnxruntime-web and back in: a MiniLM's first
    # segment returned 90 such constants, read again by each attention segment)
    constants = {
        str(n.outputs[0].name): p for n, p in index.nodes if n.op_type == "Constant" and n.domain in ("", "ai.onnx")
    }
    as_tensors = graph_outputs | {
        str(v.name) for kind, pairs in runs if kind != "dense" for n, _ in pairs for v in reads(n)
    }
    plan = Plan()
    available = set(graph_inputs)
    for i, (kind, pairs) in enumerate(runs):
        after = later_reads[i]
        nodes = [p for _, p in pairs]
        if kind == "zipmap":
            step = _zipmap_step(nodes[0])
            plan.steps.append(step)
            available.add(step["output"])
            continue
        if kind == "quantize":
            step = quantize[id(nodes[0])]
            if step["x"] not in available:
                raise SparsecError(f"wasm target: {step['name']}: input {step['x']} is not computed at run time")
            plan.steps.append(step)
            available.update([*step["outputs"], *(s["output"] for s in step["scales"])])
            continue
        if kind == "sparse":
            info = sparse_node.read(pairs[0][0])
            assert info is not None
            step = _sparse_step(nodes[0], info, index, plan)
            for name in (step["x"], *step["runtime_args"], step["residual"]):
                if name is not None and name not in available:
                    raise SparsecError(f"wasm target: {nodes[0].name}: input {name} is not computed at run time")
            plan.steps.append(step)
            available.add(step["output"])
            continue
        produced = [o for n in nodes for o in n.output if o]
        ins = sorted({str(v.name) for n, _ in pairs for v in reads(n)} & available - set(produced))
        nodes = [constants[name] for name in ins if name in constants] + nodes
        ins = [name for name in ins if name not in constants]
        outs = [o for o in produced if o in after and (o not in constants or o in as_tensors)]
        available.update(o for o in produced if o in constants)
        if not outs:
            continue  # dead nodes, or constants only
        file = f"dense_{len(plan.segments)}.onnx"
        plan.segments[file] = _segment(model, nodes, ins, outs, index)
        plan.steps.append({"kind": "dense", "file": file, "inputs": ins, "outputs": outs})
        available.update(outs)
    missing = [o.name for o in g.output if o.name not in available]
    if missing:
        raise SparsecError(f"wasm target: graph outputs {missing} are constants or undefined; not supported")
    return plan


def write_plan(model: onnx.ModelProto, folder: Path) -> Plan:
    """Write ``plan.json``, ``weights.bin`` and the dense segments into ``folder``."""
    plan = make_plan(model)
    initializers = {t.name for t in model.graph.initializer}

    def io(values: Any) -> list[dict[str, Any]]:
        out = []
        for v in values:
            if v.name in initializers:
                continue
            if v.type.WhichOneof("value") not in (None, "tensor_type"):  # a ZipMap step's sequence of maps
                out.append({"name": v.name, "type": type_text(v.type)})
                continue
            tt = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]
            elem = helper.tensor_dtype_to_np_dtype(tt.elem_type)
            out.append({"name": v.name, "dtype": str(elem), "shape": dims})
        return out

    doc = {
        "plan_version": PLAN_VERSION,
        "inputs": io(model.graph.input),
        "outputs": io(model.graph.output),
        "steps": plan.steps,
        "weights": plan.weights,
    }
    for file, seg in plan.segments.items():
        onnx.save(seg, str(folder / file))
    (folder / WEIGHTS).write_bytes(bytes(plan.blob))
    (folder / PLAN).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return plan
