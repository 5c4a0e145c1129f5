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

from . import node as sparse_node
from .errors import SparsecError
from .layer import Kernel, Layer
from .options import CompileOptions, toolchain_versions
from .targets.base import Target

Progress = Callable[[str], None]


@dataclass
class CompileResult:
    artifact: Path
    layers: list[dict[str, Any]]  # the manifest's layer records
    errors: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    unverified: str = ""  # why verification was skipped ("" when it ran or was turned off)
    checked: str = ""  # what the per-layer check covered, e.g. "18/18 sparse layers checked"

    def summary(self) -> str:
        sparse = [la for la in self.layers if la["format"] != "dense"]
        err = f", max rel error {max(self.errors.values()):.2e}" if self.errors else ""
        if self.checked and sparse:
            err += f", {self.checked}"
        note = f", NOT verified: {self.unverified}" if self.unverified else ""
        return (
            f"wrote {self.artifact} ({len(sparse)}/{len(self.layers)} layers sparse{err}{note}, {self.seconds:.1f} s)"
        )


def _noop(msg: str) -> None:
    pass


def _kernels(model: onnx.ModelProto, layers: list[Layer]) -> list[Kernel]:
    """The kernels of the sparse layers, in the rewritten graph's node order."""
    by_symbol = {la.kernel.symbol: la.kernel for la in layers if la.kernel is not None}
    order = [sparse_node.read_proto(n).symbol for n in sparse_node.sparse_protos(model)]
    return [by_symbol[symbol] for symbol in order]


def compile_model(
    model_path: str | Path,
    out_dir: str | Path,
    options: CompileOptions,
    dump_dir: str | Path | None = None,
    dims: dict[str, int] | None = None,
    progress: Progress | None = None,
) -> CompileResult:
    """Compile ``model_path`` into the artifact directory ``out_dir`` (written atomically)."""
    from .artifact import MODEL, ArtifactWriter, value_infos
    from .frontend import load_model
    from .pipeline import compile_graph
    from .targets.registry import get_target

    say = progress or _noop
    t0 = time.perf_counter()
    target = get_target(options.target, options.cpu, options.arch)  # unknown targets / CPUs / archs fail first
    untunable = target.cannot_tune()  # a target whose kernels the tuner cannot time
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
    original = load_model(model_path, say)
    if options.input_shapes:
        from .shapes import fix_input_shapes

        original = fix_input_shapes(original, options.input_shapes)
        fixed = ", ".join(f"{k}=[{','.join(map(str, v))}]" for k, v in options.input_shapes.items())
        say(f"input shapes fixed: {fixed} (the artifact takes only these)")
    refused = target.cannot_take(original)
    if refused:
        raise SparsecError(f"--target {target.name} cannot compile {Path(model_path).name}: {refused}")
    versions = toolchain_versions()
    say("analysing weights and choosing formats")
    narrowed: dict[str, tuple[int, tuple[int, ...]]] = {}
    rewritten, records = compile_graph(original, target, options, dump_dir=dump_dir, progress=say, narrowed=narrowed)
    try:
        onnx.checker.check_model(rewritten)
    except Exception as e:
        raise SparsecError(f"internal error: the rewritten model is invalid ({str(e).splitlines()[0][:200]})") from None
    specs = _kernels(rewritten, records)
    layers = [la.to_json() for la in records]
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
            "inputs": value_infos(rewritten.graph.input, rewritten),
            "outputs": value_infos(rewritten.graph.output, rewritten),
        }
        sealed = writer.seal(manifest)
        checked = ""
        if options.verify is not False and not unverified:
            from .verification import verify_artifact

            tolerance = target.tolerance(specs)  # a lossy kernel asked for (cuda)
            shapes = dims if dims is not None else options.dims
            errors, report = verify_artifact(
                target, original, rewritten, sealed, manifest, narrowed, shapes, options.seed, say, tolerance, records
            )
            checked = report.summary()
        elif unverified:
            say(f"verification skipped: {unverified}")
        artifact = writer.commit()
    return CompileResult(artifact, layers, errors, time.perf_counter() - t0, unverified, checked)


def _build_cached(target: Target, specs: list[Kernel], path: Path, versions: dict[str, str], say: Progress) -> None:
    """Build the kernel library, or copy it from the cache when the same kernels were built for the same target and
    toolchain before (builds are deterministic, so the bytes are the same either way)."""
    from . import cache

    key = cache.key_of(
        {
            "kind": "lib",
            "kernels": sorted((k.key() for k in specs), key=lambda d: d["symbol"]),
            "target": target.describe(),
            "versions": versions,
        }
    )
    side = target.side_files  # files the build writes beside the library (cuda)
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
