"""CUDA kernels without a GPU: TVM code generation for every format, nvcc/ptxas for every arch with no local
memory or spills, the schedule's structure in the source and PTX, and the launch metadata."""

from __future__ import annotations

import re

import pytest

from sparsec.targets.cuda import kernels
from sparsec.targets.cuda.build import entry_params, launch_metadata
from sparsec.targets.cuda.toolchain import compile_source, fatbin_entries, resource_usage
from tests.targets.cuda_cases import ARCHS, CASES, generated, needs_nvcc, specs


def kernel_body(source: str, entry: str) -> str:
    """The definition of ``entry`` (TVM declares each kernel, then defines it)."""
    m = re.search(rf"void (?:__launch_bounds__\(\d+\) )?{entry}\([^)]*\)\s*\{{", source)
    assert m is not None, entry
    nxt = source.find('extern "C" __global__', m.end())
    return source[m.end() : nxt if nxt != -1 else len(source)]


def test_every_case_generates_one_entry_per_kernel() -> None:
    source, launches = generated()
    params = entry_params(source)
    assert len(launches) == len(CASES)
    for launch, spec in zip(launches, specs(), strict=True):
        assert launch.entry in params, f"{launch.entry} missing from the generated source"
        abi = {"X", "Y", "M", *(name for name, _, _ in spec.arrays)}
        abi |= {"bias"} if spec.epilogue.bias else set()
        abi |= {"residual"} if spec.epilogue.residual else set()
        assert set(params[launch.entry]) == abi, (spec.format, params[launch.entry])
        assert params[launch.entry][-1] == "M"  # the runtime row count comes last, as an int64
        threads = launch.block[0] * launch.block[1] * launch.block[2]
        assert 32 <= threads <= 1024, (spec.format, launch.block)
        assert threads % 32 == 0 or spec.format.startswith("bsr"), launch.block  # bsr: (rows of X) x R threads
        assert launch.static_smem_bytes <= 48 * 1024


def test_support_table() -> None:
    assert kernels.supported("csr") and kernels.supported("nm:2:4") and kernels.supported("bsr:16x1")
    assert not kernels.supported("nm:1:4") and not kernels.supported("dense") and not kernels.supported("bsr:256x1")
    assert kernels.variants("nm:2:4") == ["f16", "bf16"]


def test_schedule_structure() -> None:
    """Shared-memory staging in every kernel, warp shuffles where lanes cooperate, coalesced loads by lane."""
    source, launches = generated()
    for launch, (fmt, _, k, _, _) in zip(launches, CASES, strict=True):
        body = kernel_body(source, launch.entry)
        if fmt == "csr" and k > 12288:
            assert "__shared__" not in body  # the X row does not fit: gathers from global memory
        else:
            assert "__shared__" in body and "__syncthreads()" in body, fmt
        if fmt == "csr":
            assert body.count("__shfl_xor_sync") == 5 * kernels_rows(k)  # butterfly over 32 lanes per row of X
            # lane j of the warp reads nonzero start + 32*jj + j: consecutive lanes, consecutive addresses
            assert re.search(r"j_ptr\[0\] = \(+jj \* 32\) \+ start_ptr\[0\]\) \+ \(\(int\)threadIdx\.x\)\)", body)
        if fmt.startswith("nm"):
            from sparsec.targets.cuda.templates import nm24

            assert body.count("tvm_builtin_ptx_mma_sp_sp_sync_aligned_m16n8k16_row_col_f32_") == nm24.M_TILES
            assert body.count("__shfl_xor_sync") == 2  # metadata OR across the quad
            # B fragments: lane (g, t) reads word g*stride + t; a stride of 4 x odd puts the 8 rows 4 banks apart
            strides = {int(v) for v in re.findall(r"\(\(int\)threadIdx\.x\) >> 2\) \* (\d+)\)", body)}
            assert strides and all(v % 8 == 4 for v in strides), strides


def kernels_rows(k: int) -> int:
    from sparsec.targets.cuda.templates import csr

    return csr.rows_per_block(k)


@needs_nvcc
@pytest.mark.parametrize("arch", ARCHS)
def test_ptxas_clean_for_every_arch(arch: str) -> None:
    """Every kernel compiles for ``arch`` with no local memory and no spills, shared memory as the launch says."""
    source, launches = generated()
    _, usage = resource_usage(source, arch)
    by_name = {r.kernel: r for r in usage}
    for launch in launches:
        r = by_name[launch.entry]
        assert r.arch == arch
        assert r.clean, f"{launch.entry} ({launch.format}) on {arch}: {r}"
        # TVM may trim a shared buffer to the region the kernel touches; never beyond what the template declares
        assert 0 < r.smem_bytes <= launch.static_smem_bytes or launch.static_smem_bytes == 0, (launch.format, r)
        assert r.registers <= 255
    meta = launch_metadata(source, arch, list(launches), usage)  # type: ignore[arg-type]
    assert all(k["spill_bytes"] == 0 and k["local_bytes"] == 0 for k in meta["kernels"])


@needs_nvcc
def test_ptx_has_sparse_tensor_core_instructions() -> None:
    source, launches = generated()
    ptx = compile_source(source, "sm_80", "ptx")[0].decode()
    assert ".target sm_80" in ptx
    nm_entries = [la.entry for la in launches if la.format == "nm:2:4"]
    for entry in nm_entries:
        body = ptx[ptx.index(f".entry {entry}(") :]
        body = body[: body.find(".entry ", 10) if ".entry " in body[10:] else len(body)]
        assert "mma.sp" in body and ".m16n8k16" in body, entry
    assert re.search(r"mma\.sp(::ordered_metadata)?\.sync\.aligned\.m16n8k16\.row\.col\.f32\.bf16\.bf16\.f32", ptx)
    assert re.search(r"mma\.sp(::ordered_metadata)?\.sync\.aligned\.m16n8k16\.row\.col\.f32\.f16\.f16\.f32", ptx)


@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_fatbin_holds_sass_and_ptx(arch: str) -> None:
    source, _ = generated()
    fatbin = compile_source(source, arch, "fatbin")[0]
    number = int(arch[3:])
    assert sorted(fatbin_entries(fatbin)) == [("ptx", number), ("sass", number)]  # SASS + PTX for the driver's JIT


def test_generated_source_does_not_depend_on_the_arch() -> None:
    """What lets the tests generate once and compile per arch (nvcc, not TVM, specializes per arch)."""
    from sparsec.targets.cuda.build import generate

    assert generate(specs()[-2:], "sm_90")[0] == generate(specs()[-2:], "sm_80")[0]


def test_too_many_output_blocks_is_a_one_line_error() -> None:
    """N is on grid.y (at most 65535 blocks); M, known only at run time, is on grid.x."""
    from sparsec.errors import SparsecError
    from sparsec.layer import Kernel

    n = 4 * (kernels.MAX_GRID_Y + 1)
    spec = Kernel(
        "wide", "csr", 8, n, (("values", (n,), "float32"), ("indices", (n,), "int32"), ("indptr", (n + 1,), "int32"))
    )
    with pytest.raises(SparsecError, match="blocks along grid.y"):
        kernels.instantiate(spec)
