"""Hand-built ONNX models with sparsec nodes (com.microsoft EPContext, docs/internals.md "sparsec nodes").

Built by hand rather than through sparsec's passes so the EP tests pin the node contract itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def csr_pack(w: np.ndarray) -> dict[str, np.ndarray]:
    """W[N, K] -> CSR arrays in kernel order: values f32[nnz], indices i32[nnz], indptr i32[N+1]."""
    rows, cols = np.nonzero(w)
    indptr = np.zeros(w.shape[0] + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=w.shape[0]), out=indptr[1:])
    return {
        "values": w[rows, cols].astype(np.float32),
        "indices": cols.astype(np.int32),
        "indptr": indptr,
    }


def random_sparse(rng: np.random.Generator, n: int, k: int, density: float = 0.2) -> np.ndarray:
    w = rng.standard_normal((n, k)).astype(np.float32)
    w[rng.random((n, k)) > density] = 0
    return w


@dataclass
class SparseLayer:
    """One sparsec node: Y = act(X @ W^T + bias + residual)."""

    name: str
    x: str
    y: str
    kernel: str
    K: int
    N: int
    packed: dict[str, np.ndarray]
    fmt: str = "csr"
    bias: np.ndarray | None = None
    residual: str | None = None  # name of a graph value with Y's shape
    act: str = "none"
    extra_ctx: str = ""  # appended to ep_cache_context (unknown keys must be ignored)
    attrs: dict[str, object] = field(default_factory=dict)  # overrides of the EPContext attributes

    def context(self) -> str:
        ctx = (
            f"sparsec=1;kernel={self.kernel};format={self.fmt};K={self.K};N={self.N};"
            f"bias={int(self.bias is not None)};residual={int(self.residual is not None)};act={self.act};"
            f"clip_min=0.0;clip_max=0.0;region=0"
        )
        return ctx + self.extra_ctx

    def build(self) -> tuple[object, list[object]]:
        from onnx import helper, numpy_helper

        inits = [numpy_helper.from_array(a, f"{self.name}__{k}") for k, a in self.packed.items()]
        inputs = [self.x] + [f"{self.name}__{k}" for k in self.packed]
        if self.bias is not None:
            inits.append(numpy_helper.from_array(self.bias.astype(np.float32), f"{self.name}__bias"))
            inputs.append(f"{self.name}__bias")
        if self.residual is not None:
            inputs.append(self.residual)
        attrs: dict[str, object] = {
            "source": "SparsecEP",
            "embed_mode": 1,
            "partition_name": self.name,
            "ep_cache_context": self.context(),
            "notes": f"sparsec {self.fmt} layer {self.name}",
        }
        attrs.update(self.attrs)
        node = helper.make_node("EPContext", inputs, [self.y], name=self.name, domain="com.microsoft", **attrs)
        return node, inits


def save_model(
    path: Path,
    layers: list[SparseLayer],
    other_nodes: list[object],
    inputs: dict[str, list[object]],
    outputs: dict[str, list[object]],
    value_shapes: dict[str, list[object]] | None = None,
    input_types: dict[str, int] | None = None,
) -> Path:
    """A model with graph inputs/outputs {name: shape} (str dims are symbolic), layers + other ONNX nodes.
    Values are float32 unless input_types gives another onnx.TensorProto element type for an input."""
    import onnx
    from onnx import TensorProto, helper

    nodes: list[object] = []
    inits: list[object] = []
    for layer in layers:
        node, layer_inits = layer.build()
        nodes.append(node)
        inits.extend(layer_inits)
    nodes.extend(other_nodes)

    def vi(name: str, shape: list[object]) -> object:
        return helper.make_tensor_value_info(name, (input_types or {}).get(name, TensorProto.FLOAT), shape)

    graph = helper.make_graph(
        nodes,
        "sparsec_ep_test",
        [vi(n, s) for n, s in inputs.items()],
        [vi(n, s) for n, s in outputs.items()],
        initializer=inits,
        # EPContext has no shape inference: intermediate values need declared types.
        value_info=[vi(n, s) for n, s in (value_shapes or {}).items()],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
        ir_version=10,
    )
    onnx.save(model, str(path))
    return path
