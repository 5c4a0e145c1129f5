"""Select: find the layers, choose each one's format (cost model, or measured with ``--tune``) and annotate it.

The stage reads the graph and writes nothing but node metadata (``sparsec.format`` / ``sparsec.reason``, visible in
``--dump-dir``); its result is the layer records in ``Compilation.layers``. Choosing is ``passes/choose.py``;
measuring is ``passes/tune.py``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import onnx
import onnx_ir as ir

from sparsec.conv import ASSUMED_HW
from sparsec.errors import SparsecError
from sparsec.layer import Layer

from .analysis import find_layers
from .choose import candidates, check_forced, choose
from .cost_model import cost_model
from .graph import Dim
from .layout import image_sizes, reorder_elements, settle_layout
from .state import Compilation


class SelectPass(ir.passes.InPlacePass):
    """Analyse every constant weight and record its format and the reason (metadata only: ``modified`` is the
    annotation)."""

    def __init__(self, state: Compilation) -> None:
        super().__init__()
        self.state = state

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        st = self.state
        options, target = st.options, st.target
        check_forced(options.format, target)
        cost = cost_model(target.name, target.isa, target.int8_dot)
        presets = candidates(target, cost)
        shapes = _concrete_shapes(model, options.dims) if options.dims else {}
        layers: list[Layer] = []
        assumed: list[str] = []  # convs sized at run time that no --dim sizes: ranked at ASSUMED_HW
        for layer in find_layers(model.graph):
            if layer.op in ("Conv", "ConvInteger") and not target.sparse_conv and not layer.skip:
                layer = replace(layer, skip=f"no sparse convolution kernels for target {target.name}")
            if layer.geom is not None and layer.geom.dynamic and not layer.skip:
                sized = _sized_conv(layer, shapes)
                if sized is layer:
                    assumed.append(layer.name)
                layer = sized
            layer = replace(layer, rows=layer.rows or _rows_from_shapes(layer, shapes))
            layer = replace(
                layer, choice=choose(layer, options.format, presets, cost, layer.rows or options.representative_m)
            )
            layers.append(layer)
        if assumed:
            st.say(
                f"{len(assumed)} convs have a symbolic height/width (e.g. {assumed[0]!r}): their kernels read the size "
                f"at run time; formats are ranked at an assumed input of {ASSUMED_HW}x{ASSUMED_HW} per conv (--dim "
                "NAME=N on the model's symbolic dims ranks them at your size; --input-shape specialises them)"
            )
        if options.format == "auto" and not options.tune:  # --tune recounts with its own, measured choices
            m = options.representative_m
            layers = settle_layout(
                layers, lambda la: replace(la, choice=choose(la, "auto", presets, cost, la.rows or m))
            )
        if options.tune:
            from .tune import tune_layers

            layers = tune_layers(layers, presets, cost, target, options, st.say)
        st.layers = {la.name: la for la in layers}
        if st.refuse_nonfinite:
            _refuse_nonfinite(layers)
        for layer in layers:
            assert layer.choice is not None
            layer.node.metadata_props["sparsec.format"] = layer.choice.format
            layer.node.metadata_props["sparsec.reason"] = layer.choice.reason
            forced_dense = options.format not in ("auto", "dense") and layer.format == "dense" and not layer.skip
            if forced_dense:
                st.say(f"warning: layer {layer.name} stays dense: {layer.choice.reason.removeprefix('stays dense: ')}")
        return ir.passes.PassResult(model, modified=bool(layers))


def _refuse_nonfinite(layers: list[Layer]) -> None:
    """Compiling refuses weights with NaN/Inf (``inspect`` reports them)."""
    for layer in layers:
        if layer.nonfinite:
            raise SparsecError(
                f"layer {layer.name}: weight {layer.weight_name!r} has {layer.nonfinite} NaN/Inf values; "
                "fix the model (sparsec does not compile non-finite weights)"
            )


def _concrete_shapes(model: ir.Model, values: dict[str, int]) -> dict[str, list[Dim]]:
    """Value shapes after shape inference with ``--dim`` values substituted into the graph inputs' symbolic dims
    (intermediate values often get fresh symbolic names that a plain lookup of ``values`` cannot resolve)."""
    m = ir.to_proto(model)
    for vi in m.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in values:
                d.dim_value = values[d.dim_param]
    del m.graph.value_info[:]
    try:
        m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    except Exception:  # noqa: BLE001 (the frontend already ran strict inference; this is a best effort)
        return {}
    out: dict[str, list[Dim]] = {}
    for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            out[vi.name] = [
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in vi.type.tensor_type.shape.dim
            ]
    for t in m.graph.initializer:
        out[t.name] = [int(d) for d in t.dims]
    return out


def _sized_conv(layer: Layer, shapes: dict[str, list[Dim]]) -> Layer:
    """A conv sized at run time, ranked at the spatial size (and batch) ``--dim`` gives its input, when it does."""
    x = layer.node.inputs[0]
    shape = shapes.get(str(x.name)) if x is not None else None
    if layer.geom is None or not shape or len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
        return layer
    try:
        geom = replace(layer.geom, H=int(shape[2]), W=int(shape[3]))  # type: ignore[arg-type]
    except ValueError:  # the given size is too small for this conv: keep the assumed one (verification will say)
        return layer
    batch = shape[0] if isinstance(shape[0], int) else 1
    sized = replace(layer, geom=geom, rows=batch * geom.P)
    return replace(sized, reorder=batch * reorder_elements(layer.node, sizes=image_sizes(geom, layer.n)))


def _rows_from_shapes(layer: Layer, shapes: dict[str, list[Dim]]) -> int | None:
    """The layer's M from concrete shapes (None when its activation's leading dims are not all known)."""
    x = layer.node.inputs[0]
    shape = shapes.get(str(x.name)) if x is not None else None
    if layer.op not in ("MatMul", "Gemm") or not shape or not all(isinstance(d, int) for d in shape):
        return None
    if layer.op == "Gemm":
        return int(shape[1] if layer.trans_a else shape[0])  # type: ignore[arg-type]
    return math.prod(shape[:-1])  # type: ignore[arg-type]
