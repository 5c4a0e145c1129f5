"""Input shapes: ``--input-shape`` (fix an input's whole shape and infer again), and knowing the shapes of the
values in front of layers where ONNX's shape inference gives up (ORT's symbolic shape inference, then measured
ORT runs)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from .errors import SparsecError, first_line
from .layer import INTEGER_OPS

LAYER_OPS = ("MatMul", "Gemm", "Conv", *INTEGER_OPS)


def _unknown_activations(model: onnx.ModelProto, static: bool = False) -> list[str]:
    """Activations of layers (MatMul/Gemm/Conv and the integer ones) with no rank after shape inference (``static``:
    or any dim that is not a number)."""
    g = model.graph
    known = {v.name: v for v in [*g.value_info, *g.input, *g.output]}
    out: list[str] = []
    for n in g.node:
        if n.op_type not in LAYER_OPS or n.domain not in ("", "ai.onnx") or not n.input:
            continue
        v = known.get(n.input[0])
        tt = v.type.tensor_type if v is not None else None
        if (
            tt is None
            or not tt.HasField("shape")
            or (static and any(not d.HasField("dim_value") for d in tt.shape.dim))
        ):
            out.append(n.input[0])
    return out


def measured_where_unknown(model: onnx.ModelProto) -> onnx.ModelProto:
    """The shapes of the values before layers as ORT runs give them, where inference left a layer's activation
    unknown (e.g. a Reshape to a Concat of computed sizes that ORT's symbolic inference cannot follow either).

    Every input fixed (``--input-shape``): one run on random inputs, every dim recorded. Symbolic inputs: only
    activations without a rank, measured at two sizes the model accepts for its symbolic dims (verify.DIM_TRIES):
    a dim equal in both runs is recorded as that number, any other stays unknown (a MatMul needs only its last dim,
    a Conv its channels). Any failure leaves the model as it is (the layer then says why it stays dense)."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    fixed = all(
        i.type.HasField("tensor_type") and all(d.HasField("dim_value") for d in i.type.tensor_type.shape.dim)
        for i in inputs
    )
    unknown = _unknown_activations(model, static=fixed)
    if not unknown:
        return model
    from .verify import DIM_TRIES, accepted_dims, random_feeds, reference_outputs, reference_session
    from .verify_layers import with_outputs

    probe = with_outputs(model, unknown)
    runs: list[dict[str, np.ndarray]] = []
    try:
        sess = reference_session(probe)  # one ORT session for choosing the sizes and measuring
        sizes: list[dict[str, int]] = [{}]
        if not fixed:
            first = accepted_dims(probe, {}, sess=sess)
            second = accepted_dims(probe, {}, tries=tuple(t for t in DIM_TRIES if t not in first.values()), sess=sess)
            sizes = [first, second]
        for sized in sizes:
            values = reference_outputs(probe, random_feeds(model, sized, seed=0), sess)
            runs.append(dict(zip([o.name for o in probe.graph.output], values, strict=True)))
    except SparsecError:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep = [v for v in out.graph.value_info if v.name not in unknown]
    del out.graph.value_info[:]
    out.graph.value_info.extend(keep)
    for name in dict.fromkeys(unknown):
        arrays = [r.get(name) for r in runs]
        if not all(isinstance(a, np.ndarray) for a in arrays) or len({a.ndim for a in arrays}) != 1:  # type: ignore[union-attr]
            continue
        shape = [d if all(a.shape[i] == d for a in arrays) else None for i, d in enumerate(arrays[0].shape)]  # type: ignore[union-attr]
        elem = onnx.helper.np_dtype_to_tensor_dtype(arrays[0].dtype)  # type: ignore[union-attr]
        out.graph.value_info.append(onnx.helper.make_tensor_value_info(name, elem, shape))
    return out


def _unrelated_dims(model: onnx.ModelProto) -> int:
    """Symbolic dims of the graph's values that are not one of its inputs' dims by name: ONNX's inference names each
    size it cannot relate to them ``unk__N`` (a Reshape to a shape computed with Shape/Gather/Concat), and a later
    pass then cannot tell two of them equal (an attention block's output and its residual input)."""
    g = model.graph
    names = {d.dim_param for i in g.input if i.type.HasField("tensor_type") for d in i.type.tensor_type.shape.dim}
    count = 0
    for v in g.value_info:
        if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape"):
            count += sum(bool(d.dim_param) and d.dim_param not in names for d in v.type.tensor_type.shape.dim)
    return count


def symbolic_where_unknown(model: onnx.ModelProto) -> onnx.ModelProto:
    """Where ONNX's shape inference leaves a layer's activation without rank (Reshape to a computed shape,
    exporters' loops) or sizes it could not relate to the inputs' dims, ORT's symbolic shape inference
    (onnxruntime.tools.symbolic_shape_infer) usually knows more: use its value shapes when they know more (fewer
    activations without rank; as many, and fewer unrelated dims), with the graph's inputs and outputs declared as
    before (it names unnamed dims). Models ONNX's inference fully covers are left as they are.

    Its sizes may rest on merges it assumed (two symbolic sizes broadcast against each other taken as equal: MiniLM-L3
    merges min(512, sequence_length) into sequence_length); a fused residual that relies on one is checked at run time
    by the EP (its shape must equal the output's), and ``--verify`` runs the artifact at two sizes per dim."""
    before, unrelated = len(_unknown_activations(model)), _unrelated_dims(model)
    if not before and not unrelated:
        return model
    try:
        ssi, complete = symbolic_inference(model)
    except Exception:  # an op it does not know: ONNX's result stands
        return model
    better = ssi.out_mp_
    after, unrelated_after = len(_unknown_activations(better)), _unrelated_dims(better)
    if not complete or (after, unrelated_after) >= (before, unrelated):  # fewer unknown activations first
        return model
    for mine, theirs in ((better.graph.input, model.graph.input), (better.graph.output, model.graph.output)):
        del mine[:]
        mine.extend(theirs)
    return better


def symbolic_inference(model: onnx.ModelProto) -> tuple[Any, bool]:
    """ORT's symbolic shape inference (auto_merge, guessed output ranks) run on ``model``: the finished
    ``SymbolicShapeInference`` (its ``out_mp_``, ``symbolic_dims_``, ``suggested_merge_``) and whether it inferred
    everything. Its steps run here rather than through ``SymbolicShapeInference.infer_shapes``, which returns only
    the model and, on an incomplete inference, saves it, weights included as external data, into the current
    directory (sym_shape_infer_temp.onnx and a uuid-named .data file: 69 MB for MiniLM-L3) before raising."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    ssi = SymbolicShapeInference(2**31 - 1, True, True, 0)
    ssi._preprocess(model)
    complete = False
    while ssi.run_:
        complete = ssi._infer_impl()
    ssi._update_output_from_vi()
    return ssi, complete


def fix_input_shapes(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> onnx.ModelProto:
    """A copy of ``model`` whose inputs named in ``shapes`` have exactly those shapes (``--input-shape``, like
    trtexec's --shapes): every dim, named, unnamed or read from -1, becomes that value; a fixed dim must agree.
    Shapes are inferred again, so the passes see static sizes (a conv's spatial size, a MatMul's rows)."""
    inits = {i.name for i in model.graph.initializer}
    inputs = {i.name: i for i in model.graph.input if i.name not in inits}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    by_name = {i.name: i for i in out.graph.input}
    for name, shape in shapes.items():
        if name not in inputs:
            raise SparsecError(f"--input-shape {name}: the model has no input {name!r} (inputs: {', '.join(inputs)})")
        if not inputs[name].type.HasField("tensor_type"):
            raise SparsecError(f"--input-shape {name}: the input is not a tensor")
        tt = inputs[name].type.tensor_type
        declared = list(tt.shape.dim)
        if tt.HasField("shape") and len(declared) != len(shape):
            raise SparsecError(
                f"--input-shape {name}: {len(shape)} dims given, the input has {len(declared)} "
                f"({_shape_text(declared)})"
            )
        for axis, (d, v) in enumerate(zip(declared, shape, strict=False)):
            if d.HasField("dim_value") and d.dim_value != v:
                raise SparsecError(
                    f"--input-shape {name}: dim {axis} is {d.dim_value} in the model, not {v} ({_shape_text(declared)})"
                )
        new = by_name[name].type.tensor_type.shape
        del new.dim[:]
        for v in shape:
            new.dim.add().dim_value = v
    del out.graph.value_info[:]
    try:
        inferred = onnx.shape_inference.infer_shapes(out, strict_mode=True, data_prop=True)
    except Exception as e:
        raise SparsecError(f"--input-shape: the model does not take these shapes ({first_line(e)})") from None
    return measured_where_unknown(symbolic_where_unknown(inferred))


def _shape_text(dims: list[onnx.TensorShapeProto.Dimension]) -> str:
    return "[" + ", ".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims) + "]"
