"""The compile driver: frontend -> passes -> target kernels -> artifact -> verification.

Each stage is named; with ``dump_dir`` the model after every graph stage is written there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from .errors import SparsecError
from .options import CompileOptions, toolchain_versions

Progress = Callable[[str], None]


@dataclass
class CompileResult:
    artifact: Path
    layers: list[dict[str, Any]]
    errors: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    unverified: str = ""  # why verification was skipped ("" when it ran or was turned off)

    def summary(self) -> str:
        sparse = [la for la in self.layers if la["format"] != "dense"]
        err = f", max rel error {max(self.errors.values()):.2e}" if self.errors else ""
        note = f", NOT verified: {self.unverified}" if self.unverified else ""
        return (
            f"wrote {self.artifact} ({len(sparse)}/{len(self.layers)} layers sparse{err}{note}, {self.seconds:.1f} s)"
        )


def _noop(msg: str) -> None:
    pass


def kernel_specs(model: onnx.ModelProto, variants: dict[str, str] | None = None) -> list[Any]:
    """The kernel each sparsec node needs, read back from the rewritten graph (the single source of truth);
    ``variants`` maps kernel symbols to the schedule variant tuning picked (else the target's default)."""
    from .formats import get_format
    from .passes.graph import sparse_info
    from .targets.base import KernelSpec

    inits = {i.name: i for i in model.graph.initializer}
    specs = []
    for node in model.graph.node:
        info = sparse_info(node)
        if info is None:
            continue
        names = get_format(info.format).array_names
        arrays = []
        for array_name, input_name in zip(names, node.input[1 : 1 + len(names)], strict=True):
            t = inits[input_name]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
            arrays.append((array_name, tuple(int(d) for d in t.dims), str(dtype)))
        specs.append(
            KernelSpec(
                symbol=info.kernel,
                format=info.format,
                K=info.K,
                N=info.N,
                arrays=tuple(arrays),
                bias=info.bias,
                residual=info.residual,
                act=info.act,
                clip_min=info.clip_min,
                clip_max=info.clip_max,
                variant=(variants or {}).get(info.kernel, ""),
                conv=info.geometry() if info.op == "conv" else None,
            )
        )
    return specs


def compile_model(
    model_path: str | Path,
    out_dir: str | Path,
    options: CompileOptions,
    dump_dir: str | Path | None = None,
    dims: dict[str, int] | None = None,
    progress: Progress | None = None,
) -> CompileResult:
    """Compile ``model_path`` into the artifact directory ``out_dir`` (written atomically)."""
    from .artifact import MODEL, ArtifactWriter
    from .frontend import load_model
    from .pipeline import run_graph_passes
    from .targets.base import get_target

    say = progress or _noop
    t0 = time.perf_counter()
    target = get_target(options.target, options.cpu, options.arch)  # unknown targets / CPUs / archs fail first
    untunable = getattr(target, "cannot_tune", lambda: "")()  # a target whose kernels the tuner cannot time
    if options.tune and untunable:
        raise SparsecError(f"--tune is {untunable}")
    if options.tune and target.cannot_run():
        raise SparsecError(
            f"--tune times kernels on this host, which cannot run {target.name} code: {target.cannot_run()}"
        )
    unverified = ""
    if options.verify is not False:
        unverified = target.cannot_run()
        if unverified and options.verify:
            raise SparsecError(f"--verify: cannot run {target.name} code on this host: {unverified}")
    say(f"loading {model_path}")
    original = load_model(model_path)
    versions = toolchain_versions()
    say("analysing weights and choosing formats")
    rewritten, layers = run_graph_passes(original, target, options, dump_dir=dump_dir, progress=say)
    specs = kernel_specs(rewritten, {la["kernel"]: la["variant"] for la in layers if la.get("variant")})
    out = Path(out_dir)
    errors: dict[str, float] = {}
    with ArtifactWriter(out) as writer:
        if specs:
            _build_cached(target, specs, writer.path(target.library_name), versions, say)
        onnx.save(rewritten, str(writer.path(MODEL)))
        target.bundle(writer.path(MODEL).parent, say)  # after model.onnx: a bundle may derive files from it
        manifest = {
            "versions": versions,
            "target": target.describe(),
            "options": {k: v for k, v in options.to_json().items() if k != "versions"},
            "options_hash": options.digest(),
            "kernel_library": target.library_name if specs else None,
            "layers": layers,
            "inputs": _value_infos(rewritten.graph.input, rewritten),
            "outputs": _value_infos(rewritten.graph.output, rewritten),
        }
        sealed = writer.seal(manifest)
        if options.verify is not False and not unverified:
            tolerance = getattr(target, "tolerance", lambda _specs: None)(specs)  # a lossy kernel asked for (cuda)
            errors = _verify(
                target, original, sealed, dims if dims is not None else options.dims, options.seed, say, tolerance
            )
        elif unverified:
            say(f"verification skipped: {unverified}")
        artifact = writer.commit()
    return CompileResult(artifact, layers, errors, time.perf_counter() - t0, unverified)


def _build_cached(target: Any, specs: list[Any], path: Path, versions: dict[str, str], say: Progress) -> None:
    """Build the kernel library, or copy it from the cache when the same specs were built for the same target and
    toolchain before (builds are deterministic, so the bytes are the same either way)."""
    import dataclasses

    from . import cache

    key = cache.key_of(
        {
            "kind": "lib",
            "specs": sorted((dataclasses.asdict(s) for s in specs), key=lambda d: d["symbol"]),
            "target": target.describe(),
            "versions": versions,
        }
    )
    side = tuple(getattr(target, "side_files", ()))  # files the build writes beside the library (cuda)
    data = cache.get_file("lib", key)
    extra = {name: cache.get_file("lib", f"{key}-{name}") for name in side}
    if data is not None and all(v is not None for v in extra.values()):
        say(f"kernel library for {len(specs)} kernels found in the cache ({cache.root()})")
        path.write_bytes(data)
        for name, blob in extra.items():
            (path.parent / name).write_bytes(blob or b"")
        return
    say(f"generating {len(specs)} {target.name} kernels with TVM")
    target.build(specs, path, say)
    cache.put_file("lib", key, path.read_bytes())
    for name in side:
        cache.put_file("lib", f"{key}-{name}", (path.parent / name).read_bytes())


def _value_infos(values: Any, model: onnx.ModelProto) -> list[dict[str, Any]]:
    inits = {i.name for i in model.graph.initializer}
    out = []
    for v in values:
        if v.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in v.type.tensor_type.shape.dim]
        out.append(
            {"name": v.name, "elem_type": onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type), "shape": dims}
        )
    return out


def _verify(
    target: Any,
    original: onnx.ModelProto,
    artifact: Path,
    dims: dict[str, int],
    seed: int,
    say: Progress,
    tolerance: float | None = None,
) -> dict[str, float]:
    """Run original (ORT on this host) and compiled model (the target's runner) on fresh random inputs; a mismatch
    (beyond ``tolerance``, default verify.TOLERANCE) fails the compile."""
    from .verify import TOLERANCE, compare_outputs, random_feeds

    limit = tolerance or TOLERANCE

    say(f"verifying against ONNX Runtime on random inputs ({target.name} artifact run on this host)")
    feeds = random_feeds(original, dims, seed=seed + 1)
    errors = compare_outputs(original, lambda: target.run_artifact(artifact, feeds), feeds)
    bad = {k: v for k, v in errors.items() if not v <= limit}
    if bad:
        name, err = max(bad.items(), key=lambda kv: kv[1])
        raise SparsecError(f"verification failed: output {name!r} differs from ORT (max rel error {err:.3g} > {limit})")
    return errors
