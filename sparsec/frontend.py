"""Load and validate an ONNX model: clear one-line errors, external data only from inside the model's folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from .errors import SparsecError

MAX_BYTES = 2**31 - 1  # protobuf's hard limit for one message
MIN_OPSET = 7  # the oldest default-domain opset ONNX Runtime supports
MAX_DIM = 2**31 - 1  # kernels index rows and columns with 32-bit integers


def _check_external_paths(model: onnx.ModelProto, base: Path) -> None:
    """Refuse external-data locations that escape the model's directory (absolute, '..', symlinks out)."""
    from onnx.external_data_helper import _get_all_tensors

    root = base.resolve()
    for tensor in _get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entry = {e.key: e.value for e in tensor.external_data}
        loc = entry.get("location", "")
        target = (root / loc).resolve()
        if not loc or Path(loc).is_absolute() or not target.is_relative_to(root):
            raise SparsecError(f"tensor {tensor.name!r}: external data path {loc!r} is outside the model directory")
        if not target.is_file():
            raise SparsecError(f"tensor {tensor.name!r}: external data file {loc!r} not found")


def _check_opset(model: onnx.ModelProto, p: Path) -> None:
    """The default ONNX domain must be imported at an opset ONNX Runtime and this onnx package know."""
    versions = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    v = versions.get("ai.onnx")
    newest = onnx.defs.onnx_opset_version()
    if v is None:
        raise SparsecError(f"{p}: the model imports no opset for the default ONNX domain")
    if v < MIN_OPSET or v > newest:
        raise SparsecError(
            f"{p}: ONNX opset {v} is not supported (supported: {MIN_OPSET} to {newest}); "
            "convert the model with onnx.version_converter"
        )


def _check_dims(model: onnx.ModelProto, p: Path, say: Callable[[str], None]) -> None:
    """Declared dimensions must fit the 32-bit indices kernels use. A negative one (-1: paddle2onnx and others write
    it for "any size", which ORT accepts) becomes an unnamed symbolic dimension, with one warning line."""
    g = model.graph
    loose: list[str] = []
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if not vi.type.HasField("tensor_type"):
            continue
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value < 0:
                d.ClearField("dim_value")
                loose.append(f"{vi.name}[{i}]")
            elif d.HasField("dim_value") and d.dim_value > MAX_DIM:
                raise SparsecError(f"{p}: {vi.name!r} declares dimension {d.dim_value}, outside 0..{MAX_DIM}")
    if loose:
        more = f", +{len(loose) - 3} more" if len(loose) > 3 else ""
        say(f"warning: {len(loose)} dimensions declared negative ({', '.join(loose[:3])}{more}) are read as symbolic")


def _quiet(msg: str) -> None:
    pass


def load_model(path: str | Path, say: Callable[[str], None] = _quiet) -> onnx.ModelProto:
    """Read, check and shape-infer a model; every failure is a SparsecError with one line; ``say`` gets warnings."""
    p = Path(path)
    if not p.is_file():
        raise SparsecError(f"{p}: no such file")
    if p.stat().st_size > MAX_BYTES:
        raise SparsecError(f"{p}: larger than 2 GiB; store the weights as external data")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        raise SparsecError(f"{p}: not a valid ONNX model ({_first_line(e)})") from None
    if not model.graph.node:
        raise SparsecError(f"{p}: not a valid ONNX model (empty graph)")
    _check_external_paths(model, p.parent)
    try:
        onnx.load_external_data_for_model(model, str(p.parent))
    except Exception as e:
        raise SparsecError(f"{p}: cannot read external data ({_first_line(e)})") from None
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise SparsecError(f"{p}: invalid ONNX model ({_first_line(e)})") from None
    _check_opset(model, p)
    _check_dims(model, p, say)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as e:
        raise SparsecError(f"{p}: shape inference failed ({_first_line(e)})") from None
    return _symbolic_where_unknown(model)


LAYER_OPS = ("MatMul", "Gemm", "Conv")


def _unknown_activations(model: onnx.ModelProto, static: bool = False) -> list[str]:
    """Activations of layers (MatMul/Gemm/Conv) with no rank or an unnamed dim after shape inference (``static``:
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
            or any(not d.HasField("dim_value") and (static or not d.dim_param) for d in tt.shape.dim)
        ):
            out.append(n.input[0])
    return out


def _measured_where_unknown(model: onnx.ModelProto) -> onnx.ModelProto:
    """With every input shape fixed (``--input-shape``), the shapes of the values before layers are what one run
    of ORT gives them: where inference left a layer's activation unknown (e.g. a Reshape to a Concat of computed
    sizes that ORT's symbolic inference cannot follow either), run the model once on random inputs and record the
    shapes it produced as value_info. Any failure leaves the model as it is (the layer then says why it is dense)."""
    unknown = _unknown_activations(model, static=True)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    fixed = all(
        i.type.HasField("tensor_type") and all(d.HasField("dim_value") for d in i.type.tensor_type.shape.dim)
        for i in inputs
    )
    if not unknown or not fixed:
        return model
    from .verify import random_feeds, reference_outputs
    from .verify_layers import with_outputs

    probe = with_outputs(model, unknown)
    try:
        values = reference_outputs(probe, random_feeds(model, {}, seed=0))
    except SparsecError:
        return model
    measured = dict(zip([o.name for o in probe.graph.output], values, strict=True))
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep = [v for v in out.graph.value_info if v.name not in unknown]
    del out.graph.value_info[:]
    out.graph.value_info.extend(keep)
    for name in dict.fromkeys(unknown):
        arr = measured.get(name)
        if isinstance(arr, np.ndarray):
            elem = onnx.helper.np_dtype_to_tensor_dtype(arr.dtype)
            out.graph.value_info.append(onnx.helper.make_tensor_value_info(name, elem, list(arr.shape)))
    return out


def _symbolic_where_unknown(model: onnx.ModelProto) -> onnx.ModelProto:
    """Where ONNX's shape inference leaves a layer's activation without rank or with unnamed dims (Reshape to a
    computed shape, exporters' loops), ORT's symbolic shape inference (onnxruntime.tools.symbolic_shape_infer)
    usually knows more: use its result when it knows more. Models ONNX's inference fully covers are left as they
    are (their artifacts keep the same bytes)."""
    before = len(_unknown_activations(model))
    if not before:
        return model
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        better = SymbolicShapeInference.infer_shapes(model, auto_merge=True, guess_output_rank=True)
    except Exception:  # an op it does not know: ONNX's result stands
        return model
    return better if better is not None and len(_unknown_activations(better)) < before else model


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
        raise SparsecError(f"--input-shape: the model does not take these shapes ({_first_line(e)})") from None
    return _measured_where_unknown(_symbolic_where_unknown(inferred))


def _shape_text(dims: list[onnx.TensorShapeProto.Dimension]) -> str:
    return "[" + ", ".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims) + "]"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
