"""Build every kernel of a model for one GPU architecture: TVM CUDA codegen -> nvcc -> the artifact's device files.

One IRModule, one ``tvm.compile`` with a CUDA target for ``arch`` (TVM's CUDA codegen of the hand-scheduled
templates), then nvcc: ``kernels.fatbin`` (the library: SASS for ``arch`` + PTX for ``compute_XX``, which the
driver JIT-compiles on newer GPUs), and beside it (``SIDE_FILES``) ``kernels.cu`` (the generated source),
``kernels.ptx``, ``kernels.cubin`` and ``kernels.json`` (launch metadata + ptxas resources, docs/internals.md).
TVM's own host stubs are not used: they call TVM's CUDA runtime, which sparsec does not ship; the launch metadata
is what a host needs (``launcher.py`` is the reference host).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sparsec.errors import SparsecError
from sparsec.layer import Kernel

from ..base import Progress, quiet
from .arch import compute_of
from .kernels import Launch, instantiate
from .toolchain import Resources, compile_source, nvcc_version, resource_usage

HOST = {"kind": "llvm", "mtriple": "x86_64-linux-gnu"}  # TVM needs a host target; its host code is not shipped
SIDE_FILES = ("kernels.cu", "kernels.ptx", "kernels.cubin", "kernels.json", "kernels.launch")
_ENTRY = re.compile(r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(([^)]*)\)\s*\{')


def build_module(specs: list[Kernel]) -> tuple[Any, list[Launch]]:
    """The IRModule of all kernels (sorted by symbol: equal spec sets give equal bytes) and their launches."""
    import tvm

    funcs: dict[str, Any] = {}
    launches = []
    for spec in sorted(specs, key=lambda s: s.symbol):
        if spec.symbol in funcs:
            raise SparsecError(f"duplicate kernel symbol {spec.symbol!r}")
        funcs[spec.symbol], launch = instantiate(spec)
        launches.append(launch)
    return tvm.IRModule(funcs), launches


def generate(specs: list[Kernel], arch: str) -> tuple[str, list[Launch]]:
    """(CUDA source, launches) for ``specs`` on ``arch``: TVM's CUDA codegen, no device compile (TVM 0.27 keeps
    the source in a fallback module when the CUDA runtime cannot load, i.e. without a driver)."""
    import tvm

    mod, launches = build_module(specs)
    target = tvm.target.Target({"kind": "cuda", "arch": arch}, host=HOST)
    ex = tvm.compile(mod, target=target)
    sources, stack = [], [ex.mod]
    while stack:
        m = stack.pop()
        stack.extend(m.imports)
        if m.kind == "cuda":
            sources.append(m.inspect_source("cuda"))
    if len(sources) != 1:
        raise SparsecError(f"expected one CUDA module from TVM, got {len(sources)}")
    return sources[0], launches


_ABI_NAMES = {"R": "residual", "Res": "residual"}  # template buffer names -> the ABI's (docs/internals.md)


def entry_params(source: str) -> dict[str, list[str]]:
    """Device entry name -> its parameters in order, by ABI name (X, packed arrays, bias, residual, Y; M = rows of
    X, an int64 scalar). TVM orders the buffer pointers by name and puts the shape variable M last."""
    out = {}
    for name, params in _ENTRY.findall(source):
        names = [p.strip().split()[-1].removesuffix("_ptr") for p in params.split(",") if p.strip()]
        out[name] = [_ABI_NAMES.get(n, n) for n in names]
    return out


def build_library(specs: list[Kernel], out_path: Path, arch: str, progress: Progress = quiet) -> None:
    """Write the fatbin (SASS for ``arch`` + PTX) to ``out_path`` and the SIDE_FILES beside it."""
    say = progress
    say(f"generating {len(specs)} CUDA kernels for {arch} (TVM codegen, nvcc {nvcc_version()})")
    source, launches = generate(specs, arch)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = out.parent
    (folder / "kernels.cu").write_text(source)
    say(f"nvcc: fatbin ({arch} SASS + {compute_of(arch)} PTX), ptx, cubin")
    out.write_bytes(compile_source(source, arch, "fatbin")[0])
    (folder / "kernels.ptx").write_bytes(compile_source(source, arch, "ptx")[0])
    cubin, usage = resource_usage(source, arch)
    (folder / "kernels.cubin").write_bytes(cubin)
    meta = launch_metadata(source, arch, launches, usage)
    (folder / "kernels.json").write_text(json.dumps(meta, indent=1) + "\n")
    (folder / "kernels.launch").write_text(launch_table(meta, specs))
    for r in usage:
        if not r.clean:
            say(f"warning: {r.kernel} uses local memory ({r.stack_bytes} B) or spills on {arch}")
    say(f"wrote {out.name} and {', '.join(SIDE_FILES)}")


def abi_names(spec: Kernel) -> list[str]:
    """The kernel ABI's argument order by name: X, the packed arrays, [bias], [residual], Y."""
    names = ["X", *(name for name, _, _ in spec.arrays)]
    e = spec.epilogue
    return names + (["bias"] if e.bias else []) + (["residual"] if e.residual else []) + ["Y"]


def launch_table(meta: dict[str, Any], specs: list[Kernel]) -> str:
    """kernels.launch, the EP's launch metadata (no JSON parser in C++): one line per kernel,
    ``symbol entry bx by bz grid_y rows_per_block abi,names params,names``."""
    by_symbol = {s.symbol: s for s in specs}
    lines = []
    for k in meta["kernels"]:
        abi = ",".join(abi_names(by_symbol[k["symbol"]]))
        block = " ".join(str(v) for v in k["block"])
        fields = [k["symbol"], k["entry"], block, k["grid_y"], k["rows_per_block"], abi, ",".join(k["params"])]
        lines.append(" ".join(str(f) for f in fields))
    return "\n".join(lines) + "\n"


def launch_metadata(source: str, arch: str, launches: list[Launch], usage: list[Resources]) -> dict[str, Any]:
    """kernels.json: per kernel its entry, parameter order, block, grid rule, shared memory and ptxas report."""
    resources = {r.kernel: r for r in usage}
    params = entry_params(source)
    kernels = []
    for launch in launches:
        res = resources.get(launch.entry)
        kernels.append(
            {
                **launch.to_json(),
                "params": params.get(launch.entry, []),
                "registers": res.registers if res else None,
                "local_bytes": res.stack_bytes if res else None,
                "spill_bytes": (res.spill_stores + res.spill_loads) if res else None,
            }
        )
    return {"arch": arch, "ptx_arch": compute_of(arch), "nvcc": nvcc_version(), "kernels": kernels}
