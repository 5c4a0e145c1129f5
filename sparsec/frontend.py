"""Load and validate an ONNX model: clear one-line errors, external data only from inside the model's folder."""

from __future__ import annotations

from pathlib import Path

import onnx

from .errors import SparsecError, first_line
from .targets.base import Progress, quiet

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


def _check_dims(model: onnx.ModelProto, p: Path, say: Progress) -> None:
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


def load_model(path: str | Path, say: Progress = quiet) -> onnx.ModelProto:
    """Read, check and shape-infer a model; every failure is a SparsecError with one line; ``say`` gets warnings."""
    p = Path(path)
    if not p.is_file():
        raise SparsecError(f"{p}: no such file")
    if p.stat().st_size > MAX_BYTES:
        raise SparsecError(f"{p}: larger than 2 GiB; store the weights as external data")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        raise SparsecError(f"{p}: not a valid ONNX model ({first_line(e)})") from None
    if not model.graph.node:
        raise SparsecError(f"{p}: not a valid ONNX model (empty graph)")
    _check_external_paths(model, p.parent)
    try:
        onnx.load_external_data_for_model(model, str(p.parent))
    except Exception as e:
        raise SparsecError(f"{p}: cannot read external data ({first_line(e)})") from None
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise SparsecError(f"{p}: invalid ONNX model ({first_line(e)})") from None
    _check_opset(model, p)
    _check_dims(model, p, say)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as e:
        raise SparsecError(f"{p}: shape inference failed ({first_line(e)})") from None
    from .shapes import measured_where_unknown, symbolic_where_unknown

    return measured_where_unknown(symbolic_where_unknown(model))
