"""The ``sparsec`` command line: parses arguments and calls the Python API (imports are lazy: --help is instant)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

FORMAT_HELP = (
    "auto | dense | csr | bsr:RxC | nm:N:M | int8:1x4 (integer layers; x86 with AVX-512 VNNI, arm with a --cpu that has"
    " dot products)"
)


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every failure into one line on stderr and a non-zero exit (SPARSEC_DEBUG=1 shows the traceback)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .errors import SparsecError

        try:
            return fn(*args, **kwargs)
        except SparsecError as e:
            _fail(str(e))
        except (KeyboardInterrupt, click.exceptions.Exit, click.ClickException):
            raise
        except Exception as e:  # an internal bug: still one line, never a traceback dump
            if os.environ.get("SPARSEC_DEBUG"):
                raise
            first = (str(e).strip().splitlines() or [""])[0][:300]
            _fail(f"internal error ({type(e).__name__}: {first}); rerun with SPARSEC_DEBUG=1 for details")

    return wrapper


def _dims(values: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        name, sep, num = v.partition("=")
        if not sep or not num.isdigit() or int(num) < 1:
            _fail(f"bad --dim {v!r}: expected NAME=POSITIVE_INT")
        out[name] = int(num)
    return out


def _shapes(values: tuple[str, ...]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for v in values:
        name, sep, dims = v.partition("=")
        parts = dims.split(",")
        if not sep or not name or not all(p.isdigit() and int(p) >= 1 for p in parts):
            _fail(f"bad --input-shape {v!r}: expected NAME=D0,D1,... with positive integers")
        out[name] = [int(p) for p in parts]
    return out


SHAPE_HELP = "NAME=D0,D1,... fixes an input's shape (every dim, named, unnamed or -1); the artifact takes only it"


def progress(msg: str) -> None:
    click.echo(f"[sparsec] {msg}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sparsec")
def main() -> None:
    """sparsec: compile pruned ONNX models into sparse kernels that run inside ONNX Runtime."""


@main.command("compile")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--target",
    default="x86",
    show_default=True,
    help="x86 (this host) | arm (aarch64 + NEON) | wasm (node, browser) | cuda (NVIDIA GPU)",
)
@click.option("--cpu", default="", help="arm: the core to tune for, an LLVM CPU name (e.g. cortex-a76) [generic]")
@click.option("--arch", default="", help="cuda: sm_80 | sm_86 | sm_89 | sm_90 [sm_80]")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="artifact directory [MODEL.sparsec]")
@click.option("--format", "fmt", default="auto", show_default=True, help=FORMAT_HELP)
@click.option(
    "--verify/--no-verify",
    default=None,
    help="compare with ORT on random inputs [default: when this host can run the target's code; arm: qemu; wasm: node]",
)
@click.option("--tune", is_flag=True, help="x86: measure formats and kernel variants per layer on this host (cached)")
@click.option("--dump-dir", type=click.Path(file_okay=False, path_type=Path), help="write the model after each stage")
@click.option(
    "--dim",
    "dims",
    multiple=True,
    help="NAME=VALUE for symbolic input dims (format choice, --tune, --verify); INPUT[AXIS]=VALUE sizes an "
    "unnamed one for --verify",
)
@click.option("--input-shape", "input_shapes", multiple=True, help=SHAPE_HELP)
@_guard
def compile_cmd(
    model: Path,
    target: str,
    cpu: str,
    arch: str,
    output: Path | None,
    fmt: str,
    verify: bool | None,
    tune: bool,
    dump_dir: Path | None,
    dims: tuple[str, ...],
    input_shapes: tuple[str, ...],
) -> None:
    """Compile MODEL.onnx into an artifact directory."""
    from .compiler import compile_model
    from .options import CompileOptions

    opts = CompileOptions(
        target=target,
        format=fmt,
        verify=verify,
        cpu=cpu,
        arch=arch,
        tune=tune,
        dims=_dims(dims),
        input_shapes=_shapes(input_shapes),
    )
    out = output or model.with_suffix(".sparsec")
    result = compile_model(model, out, opts, dump_dir=dump_dir, progress=progress)
    click.echo(result.summary())


@main.command("inspect")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", default="x86", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print a JSON document")
@click.option("--dim", "dims", multiple=True, help="NAME=VALUE for symbolic input dims (the M formats are ranked at)")
@click.option("--input-shape", "input_shapes", multiple=True, help=SHAPE_HELP)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="FILE.svg|png: per layer density, chosen format, time and speedup (predicted; measured with --tune)",
)
@click.option("--tune", is_flag=True, help="x86: measure the formats on this host as compile --tune does (cached)")
@_guard
def inspect_cmd(
    model: Path,
    target: str,
    as_json: bool,
    dims: tuple[str, ...],
    input_shapes: tuple[str, ...],
    plot: Path | None,
    tune: bool,
) -> None:
    """Per constant weight: shape, density, N:M conformity, block fit, zero rows/cols, the format it would get."""
    from .inspect import format_table, inspect_model

    if plot is not None:
        from .plot import check_path

        check_path(plot)
    report = inspect_model(model, target, _dims(dims), _shapes(input_shapes), tune=tune)
    click.echo(json.dumps(report, indent=2) if as_json else format_table(report))
    if plot is not None:
        from .plot import render

        click.echo(render(report, plot), err=as_json)


@main.command("prune")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--pattern", required=True, help="unstructured:0.9 | block:RxC:0.9 | nm:2:4")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@_guard
def prune_cmd(model: Path, pattern: str, output: Path) -> None:
    """Magnitude-prune MatMul/Gemm/Conv weights (for trying the compiler; no substitute for fine-tuned pruning)."""
    from .prune_cli import prune_file

    click.echo(prune_file(model, pattern, output))


@main.command("quantize")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--mode",
    default="qdq",
    show_default=True,
    help="qdq (static: per-channel int8 weights, calibrated activations) | dynamic (MatMulInteger) | qoperator "
    "(static: QLinearMatMul/QLinearConv, uint8 activations)",
)
@click.option(
    "--calibration",
    type=click.Path(file_okay=False, path_type=Path),
    help="qdq/qoperator: a directory with INPUT.npy per input, samples on axis 0 [random inputs]",
)
@click.option(
    "--activations",
    type=click.Choice(["int8", "uint8"]),
    help="qdq/qoperator: the activations' type [qdq: int8, qoperator: uint8]",
)
@_guard
def quantize_cmd(model: Path, output: Path, mode: str, calibration: Path | None, activations: str | None) -> None:
    """int8-quantize a (pruned) model with onnxruntime.quantization (pruned weights stay zero)."""
    from .quantize import quantize_file

    click.echo(quantize_file(model, output, mode, calibration, say=progress, activations=activations))


@main.command("run")
@click.argument("artifact", type=click.Path(file_okay=False, path_type=Path))
@click.option("--input", "inputs", multiple=True, help="NAME=FILE.npy (repeat per input)")
@click.option(
    "--input-shape",
    "input_shapes",
    multiple=True,
    help="NAME=D0,D1,... the shape of a random input (inputs without --input are random, seeded)",
)
@click.option("--dim", "dims", multiple=True, help="NAME=VALUE sizes symbolic dims of random inputs")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the random inputs")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="write outputs to OUT.npz")
@_guard
def run_cmd(
    artifact: Path,
    inputs: tuple[str, ...],
    input_shapes: tuple[str, ...],
    dims: tuple[str, ...],
    seed: int,
    output: Path | None,
) -> None:
    """Run an artifact on inputs from .npy files (random ones for inputs not given)."""
    import numpy as np

    from .run import run_artifact

    outs = run_artifact(artifact, inputs, _shapes(input_shapes), _dims(dims), seed=seed, say=progress)
    other = [name for name, v in outs.items() if not isinstance(v, np.ndarray)]  # sequences / maps (ai.onnx.ml)
    if output:
        if other:
            _fail(f"output {other[0]!r} is not a tensor: .npz holds tensors only; run without -o to print it")
        np.savez(output, **outs)  # type: ignore[arg-type]  # numpy's stub: a ** mapping could name allow_pickle
        click.echo(f"wrote {len(outs)} outputs to {output}")
    else:
        for name, v in outs.items():
            if isinstance(v, np.ndarray):
                click.echo(f"{name}: shape={list(v.shape)} dtype={v.dtype} mean={float(v.mean()):.6g}")
            else:
                text = repr(v)
                click.echo(f"{name}: {type(v).__name__} of {len(v)}: {text[:200]}{'...' if len(text) > 200 else ''}")


@main.command("bench")
@click.argument("artifact", type=click.Path(file_okay=False, path_type=Path))
@click.option("--baseline", type=click.Path(dir_okay=False, path_type=Path), required=True, help="original model")
@click.option(
    "--dim", "dims", multiple=True, help="NAME=VALUE for symbolic input dims (INPUT[AXIS]=VALUE: an unnamed one)"
)
@click.option("--input-shape", "input_shapes", multiple=True, help="NAME=D0,D1,... an input's shape for both")
@click.option("--threads", type=int, default=0, help="intra-op threads for both (0: all cores)")
@click.option("--repeat", type=int, default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_guard
def bench_cmd(
    artifact: Path,
    baseline: Path,
    dims: tuple[str, ...],
    input_shapes: tuple[str, ...],
    threads: int,
    repeat: int,
    as_json: bool,
) -> None:
    """Median latency of ORT on the baseline vs the artifact (same inputs and threads, interleaved runs)."""
    from .bench import bench

    r = bench(artifact, baseline, _dims(dims), threads=threads, repeat=repeat, input_shapes=_shapes(input_shapes))
    if as_json:
        click.echo(json.dumps(r, indent=2))
    else:
        click.echo(
            f"ORT dense {r['ort_ms']:.3f} ms | sparsec {r['sparsec_ms']:.3f} ms | speedup {r['speedup']:.2f}x "
            f"| max rel err {r['max_rel_error']:.2e}"
        )


@main.command("cache")
@click.option("--clear", is_flag=True, help="delete every cached tuning result and kernel library")
@_guard
def cache_cmd(clear: bool) -> None:
    """Show (or clear) the cache of --tune measurements and built kernel libraries."""
    from . import cache

    if clear:
        click.echo(f"removed {cache.clear()} cache entries from {cache.root()}")
        return
    info = cache.usage()
    state = "on" if info["enabled"] else "off (SPARSEC_CACHE=off)"
    click.echo(f"cache: {info['path']} ({state})")
    for kind, v in info["kinds"].items():
        click.echo(f"  {kind}: {v['entries']} entries, {v['bytes'] / 1e6:.1f} MB")


@main.command("tune-cost-model")
@click.option("--quick", is_flag=True, help="fewer shapes, densities and samples (about 2 minutes instead of 6)")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="cost-data JSON [the installed table]")
@click.option("--threads", type=int, default=0, help="TVM and ORT intra-op threads (0: all cores)")
@_guard
def tune_cost_model_cmd(quick: bool, out: Path | None, threads: int) -> None:
    """Re-measure the x86 cost model on this machine (used by `compile` without --tune) and store it."""
    from .passes.calibrate import main as calibrate_main

    args = ["--quick"] if quick else []
    args += ["--threads", str(threads or os.cpu_count() or 1)]
    if out:
        args += ["--out", str(out)]
    calibrate_main(args)


if __name__ == "__main__":
    main()
