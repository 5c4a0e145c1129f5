"""The CUDA kernel table: which template and launch geometry each format gets (the one place tests iterate over).

``instantiate(spec)`` returns the PrimFunc (named ``spec.symbol``; TVM names the device entry ``<symbol>_kernel``)
and its ``Launch``: the block shape, the fixed grid.y (over N) and the rows of X per block
(grid.x = ceil(M / rows)).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from sparsec.errors import SparsecError
from sparsec.formats import family
from sparsec.layer import Kernel

from ..tir import finish

_BSR = re.compile(r"^bsr:(\d+)x(\d+)$")
# Variants per format family, default first. nm:2:4: the 16-bit type the tensor cores multiply.
VARIANTS: dict[str, tuple[str, ...]] = {"csr": ("warp",), "bsr": ("tile",), "nm": ("f16", "bf16")}
NM_DTYPES = {"f16": "float16", "bf16": "bfloat16"}
MAX_GRID_Y = 65535  # CUDA's limit on gridDim.y (the outputs); M goes on grid.x (2^31 - 1)
# max |err| / max |ref| a compile verifies a lossy nm:2:4 artifact against (11 / 8 significant bits per input)
LOSSY_TOLERANCE = {"f16": 5e-3, "bf16": 3e-2}


@dataclass(frozen=True)
class Launch:
    """How the host launches one kernel (also written to kernels.json)."""

    symbol: str
    entry: str  # the device function name in the cubin / PTX
    format: str
    variant: str
    block: tuple[int, int, int]
    grid_y: int  # blocks over the outputs N (fixed per kernel)
    rows_per_block: int  # grid.x = ceil(M / rows_per_block), M = rows of X at run time
    static_smem_bytes: int  # static shared memory per block, in the cubin (launch with 0 dynamic bytes)
    lossy: bool  # inputs rounded to 16 bits (nm:2:4 on tensor cores)

    def grid(self, m: int) -> tuple[int, int, int]:
        return ((m + self.rows_per_block - 1) // self.rows_per_block, self.grid_y, 1)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def supported(fmt: str) -> bool:
    """csr, every bsr:RxC with R <= 128, and nm:2:4 (the only N:M pattern sparse tensor cores run)."""
    if fmt == "csr" or fmt == "nm:2:4":
        return True
    m = _BSR.match(fmt)
    return m is not None and int(m[1]) <= 128


def variants(fmt: str) -> list[str]:
    return list(VARIANTS[family(fmt)]) if supported(fmt) else []


def instantiate(spec: Kernel) -> tuple[Any, Launch]:
    """The PrimFunc and launch geometry of one sparse layer."""
    from .epilogue import make_epilogue
    from .templates import bsr, csr, nm24

    if spec.conv is not None:
        raise SparsecError(f"kernel {spec.symbol}: sparse convolutions are not compiled for cuda (they stay dense)")
    if not supported(spec.format):
        raise SparsecError(f"kernel {spec.symbol}: no cuda kernel for format {spec.format}")
    fam = family(spec.format)
    variant = spec.variant or VARIANTS[fam][0]
    if variant not in VARIANTS[fam]:
        raise SparsecError(f"kernel {spec.symbol}: unknown cuda variant {variant!r} for {spec.format}")
    epi = make_epilogue(spec.epilogue)
    K, N = spec.K, spec.N  # noqa: N806
    if fam == "csr":
        nnz = spec.array("values")[0][0]
        func = csr.kernel(K, N, nnz, epi)
        block, grid_y, rows, smem = (32, csr.WARPS, 1), -(-N // csr.WARPS), csr.rows_per_block(K), csr.smem_bytes(K)
    elif fam == "bsr":
        m = _BSR.match(spec.format)
        assert m is not None
        r, c = int(m[1]), int(m[2])
        nnzb = spec.array("data")[0][0]
        func = bsr.kernel(K, N, r, c, nnzb, epi)
        rows = bsr.rows_per_block(r)
        block, grid_y, smem = (rows * r, 1, 1), -(-N // r), bsr.smem_bytes(K, r, c)
    else:
        groups = spec.array("values")[0][1] // 2
        func = nm24.kernel(K, N, groups, epi, NM_DTYPES[variant])
        block, grid_y, rows, smem = (32, nm24.WARPS, 1), -(-N // nm24.N_TILE), nm24.M_TILE, nm24.smem_bytes(K)
    if grid_y > MAX_GRID_Y:
        raise SparsecError(f"kernel {spec.symbol}: N={N} needs {grid_y} blocks along grid.y (CUDA allows {MAX_GRID_Y})")
    launch = Launch(
        symbol=spec.symbol,
        entry=f"{spec.symbol}_kernel",
        format=spec.format,
        variant=variant,
        block=block,
        grid_y=grid_y,
        rows_per_block=rows,
        static_smem_bytes=smem,
        lossy=fam == "nm",
    )
    return finish(func, spec.symbol, spec.epilogue.bias, spec.epilogue.residual), launch
