"""Sparse convolution templates over NCHW: ``Y[b, n, p] = act(sum_k W[n, k] * col[b, k, p] + bias[n] + R[b, n, p])``.

The sparse operand is on the left and the output pixels p (contiguous in NCHW) are the vector axis: one nonzero
W[n, k] multiplies a contiguous vector col[k, p0:p0+vw], the loop nest of XNNPACK's f32-spmm. A pointwise conv reads
X[b] (viewed [C, H*W]) directly as col; any other geometry first builds col[K, P] for image b in a workspace
(explicit im2col, rows in parallel, zero padding). Packed layouts are the matmul ones for W[N, K] (docs/internals.md).

Work is split into (pixel tile x output-row chunk) items run in parallel: a pixel tile's col slice stays in cache
while every output row of the chunk reuses it (parallel over rows alone would stream all of col once per row).
Pixel tiles are ``mu`` vectors wide, then one tile of the remaining whole vectors, then, when P is not a multiple of
the vector width, one vector shifted back to end at P (it rewrites a few outputs with identical values). P < vw: a
single tile P lanes wide.

A *dynamic* geometry (symbolic height and width) uses the same tile macros with the sizes read at run time: its
driver and prim_func are in templates/conv_runtime.py. Work split (row chunks) and ``mu`` are chosen at the size
assumed for ranking.
"""

from __future__ import annotations

from typing import Any

from sparsec.conv import ConvGeometry

from ...tir import ValueEpilogueFn
from .conv_runtime import runtime_images, runtime_kernel

MIN_ITEMS = 8  # parallel work items to aim for (2 cores here; more items balance ragged rows)


def pixel_tiles(P: int, vw: int, mu: int) -> tuple[int, int, list[tuple[int, int, int, bool]]]:  # noqa: N803
    """(full tiles of ``mu`` vectors, their lanes, the static extra tile as [(p0, vectors, lanes, clamp)]).

    The extra tile holds the remaining vectors; with ``clamp`` its last vector starts at P - vw (it rewrites a few
    outputs with identical values), so every pixel is covered in one pass over the weights.
    """
    if P < vw:
        return 0, vw, [(0, 1, P, False)]
    nvec = -(-P // vw)
    big = nvec // mu
    rem = nvec - big * mu
    if P % vw and not rem:  # the ragged last vector must be in the clamped tile
        big, rem = big - 1, mu
    return big, vw, [(big * mu * vw, rem, vw, P % vw != 0)] if rem else []


def _px(P: int, p0: Any, u: Any, L: int, v: Any, clamp: bool) -> Any:  # noqa: N803
    """Pixel of lane v of vector u in a tile at p0 (the clamped last vector ends at P)."""
    from tvm.script import tirx as T

    return (T.min(p0 + u * L, P - L) if clamp else p0 + u * L) + v


def _split(rows: int, tiles: int) -> tuple[int, int]:
    """(chunks, rows per chunk) so that tiles * chunks reaches about MIN_ITEMS."""
    chunks = max(1, min(rows, -(-MIN_ITEMS // max(tiles, 1))))
    per = -(-rows // chunks)
    return -(-rows // per), per


def _im2col_macro(g: ConvGeometry) -> Any:
    """``im2col(X, col, b, H, W, OH, OW)`` (sizes are ints, or expressions of a dynamic kernel) and col's shape
    (static; a dynamic kernel allocates [1, K, P] itself)."""
    from tvm.script import tirx as T

    khw = g.kh * g.kw

    @T.macro
    def im2col(X, col, b, H, W, OH, OW):  # noqa: N803
        for k in T.parallel(g.K):
            # Output columns ow whose input column iw = ow*sw + off is inside X: [lo, hi); the rest are padding.
            off = k % g.kw * g.dw - g.pl
            lo = T.min(T.max((g.sw - 1 - off) // g.sw, 0), OW)
            hi = T.max(T.min((W - 1 - off) // g.sw + 1, OW), lo)
            for oh in range(OH):
                ih = oh * g.sh - g.pt + (k % khw) // g.kw * g.dh
                if 0 <= ih and ih < H:
                    for ow in range(lo):
                        col[0, k, oh * OW + ow] = T.float32(0)
                    for ow in range(hi - lo):  # stride 1: a contiguous copy
                        col[0, k, oh * OW + lo + ow] = X[b, k // khw, ih * W + (lo + ow) * g.sw + off]
                    for ow in range(OW - hi):
                        col[0, k, oh * OW + hi + ow] = T.float32(0)
                else:
                    for ow in range(OW):
                        col[0, k, oh * OW + ow] = T.float32(0)

    @T.macro
    def nothing(X, col, b, H, W, OH, OW):  # noqa: N803
        T.evaluate(0)

    return nothing if g.pointwise else im2col, (1, 1, 1) if g.pointwise else (1, g.K, g.P)


def _helpers(g: ConvGeometry, epi: ValueEpilogueFn, bias: bool, residual: bool) -> tuple[Any, Any]:
    """``load(X, col, b, k, p)`` reads col; ``out(acc, B, R, b, n, p)`` is the epilogue value at (b, n, p)."""

    def load(X: Any, col: Any, b: Any, k: Any, p: Any) -> Any:  # noqa: N803
        return X[b, k, p] if g.pointwise else col[0, k, p]

    def out(acc: Any, bias_buf: Any, res: Any, b: Any, n: Any, p: Any) -> Any:
        return epi(acc, bias_buf[n] if bias else None, res[b, n, p] if residual else None)

    return load, out


def _images(
    g: ConvGeometry, prep: Any, tile: Any, big: int, lanes: int, extra: list[Any], chunks: int, mu: int, vw: int
) -> Any:
    """The driver every format shares: for each image, im2col (if any), then the (pixel tile x row chunk) items in
    one parallel region. ``tile(X, col, Y, Res, w0, w1, w2, bias, b, chunk, p0, vectors, lanes, clamp, P)``
    computes one item; w0..w2 are the format's packed arrays (N:M has two and passes its second one twice).
    ``images(..., B, H, W, OH, OW)``: the sizes are the static geometry's, or a dynamic kernel's expressions."""
    if g.dynamic:
        return runtime_images(prep, tile, chunks, mu, vw)
    return _images_static(prep, tile, big, lanes, extra, chunks, mu)


def _images_static(prep: Any, tile: Any, big: int, lanes: int, extra: list[Any], chunks: int, mu: int) -> Any:
    from tvm.script import tirx as T

    def full(it: Any) -> tuple[Any, int, int, bool]:
        """(p0, vectors, lanes, clamp) of the full tile of work item ``it``."""
        return it // chunks * (mu * lanes), mu, lanes, False

    @T.macro
    def images(X, col, Y, Res, w0, w1, w2, bias_b, B, H, W, OH, OW):  # noqa: N803
        for b in range(B):
            prep(X, col, b, H, W, OH, OW)
            if len(extra) > 0:  # one parallel region per image: every launch wakes the pool
                for it in T.parallel((big + 1) * chunks):
                    if it < big * chunks:
                        tile(X, col, Y, Res, w0, w1, w2, bias_b, b, it % chunks, *full(it), OH * OW)
                    else:
                        tile(X, col, Y, Res, w0, w1, w2, bias_b, b, it % chunks, *extra[0], OH * OW)
            else:
                for it in T.parallel(big * chunks):
                    tile(X, col, Y, Res, w0, w1, w2, bias_b, b, it % chunks, *full(it), OH * OW)

    return images


def csr(g: ConvGeometry, N: int, nnz: int, vw: int, epi: ValueEpilogueFn, bias: bool, residual: bool, mu: int) -> Any:  # noqa: N803
    """CSR over output channels: one row's nonzeros times U vectors of pixels."""
    from tvm.script import tirx as T

    prep, col_shape = _im2col_macro(g)
    load, out = _helpers(g, epi, bias, residual)
    P, HW = g.P, g.H * g.W  # noqa: N806
    big, lanes, extra = pixel_tiles(P, vw, mu)
    chunks, per = _split(N, big + len(extra))

    @T.macro
    def tile(X, col, Y, Res, values, indices, indptr, bias_b, b, c, p0, U, L, cl, P):  # noqa: N803
        for i in range(T.min(per, N - c * per)):  # from 0: TVM 0.27 miscompiles range(a, b) bounds read inside
            n = c * per + i
            acc = T.alloc_buffer((U, L), "float32", scope="local")
            for u in T.unroll(U):
                for v in T.vectorized(L):
                    acc[u, v] = T.float32(0)
            for j in range(indptr[n], indptr[n + 1]):
                for u in T.unroll(U):
                    for v in T.vectorized(L):
                        acc[u, v] = acc[u, v] + values[j] * load(X, col, b, indices[j], _px(P, p0, u, L, v, cl))
            for u in range(U):
                for v in T.vectorized(L):
                    Y[b, n, _px(P, p0, u, L, v, cl)] = out(acc[u, v], bias_b, Res, b, n, _px(P, p0, u, L, v, cl))

    images = _images(g, prep, tile, big, lanes, extra, chunks, mu, vw)

    @T.prim_func
    def kernel(
        x: T.handle,
        values: T.Buffer((nnz,), "float32"),
        indices: T.Buffer((nnz,), "int32"),
        indptr: T.Buffer((N + 1,), "int32"),
        bias_b: T.Buffer((N,), "float32"),
        r: T.handle,
        y: T.handle,
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        B = T.int64()
        X = T.match_buffer(x, (B, g.C, HW), "float32")
        Res = T.match_buffer(r, (B, N, P), "float32")
        Y = T.match_buffer(y, (B, N, P), "float32")
        col = T.alloc_buffer(col_shape, "float32")
        images(X, col, Y, Res, values, indices, indptr, bias_b, B, g.H, g.W, g.OH, g.OW)

    if g.dynamic:
        return runtime_kernel(g, N, [((nnz,), "float32"), ((nnz,), "int32"), ((N + 1,), "int32")], images)
    return kernel


def bsr(
    g: ConvGeometry,
    N: int,
    R: int,
    C: int,
    nnzb: int,
    vw: int,
    epi: ValueEpilogueFn,
    bias: bool,
    residual: bool,
    mu: int,
) -> Any:  # noqa: N803, E501
    """BSR over output channels (R x C blocks): each pixel vector is reused by the R rows of a block."""
    from tvm.script import tirx as T

    prep, col_shape = _im2col_macro(g)
    load, out = _helpers(g, epi, bias, residual)
    P, HW = g.P, g.H * g.W  # noqa: N806
    nbr = -(-N // R)
    big, lanes, extra = pixel_tiles(P, vw, mu)
    chunks, per = _split(nbr, big + len(extra))

    @T.macro
    def tile(X, col, Y, Res, data, indices, indptr, bias_b, b, c, p0, U, L, cl, P):  # noqa: N803
        for i in range(T.min(per, nbr - c * per)):
            ib = c * per + i
            n0 = T.min(ib * R, N - R)
            acc = T.alloc_buffer((R, U, L), "float32", scope="local")
            for r in T.unroll(R):
                for u in T.unroll(U):
                    for v in T.vectorized(L):
                        acc[r, u, v] = T.float32(0)
            lo = indptr[ib]
            for e0 in range(indptr[ib + 1] - lo):
                for cc in T.unroll(C):
                    for u in T.unroll(U):
                        xv = T.alloc_buffer((L,), "float32", scope="local")
                        for v in T.vectorized(L):
                            xv[v] = load(X, col, b, indices[lo + e0] + cc, _px(P, p0, u, L, v, cl))
                        for r in T.unroll(R):
                            for v in T.vectorized(L):
                                acc[r, u, v] = acc[r, u, v] + data[lo + e0, r, cc] * xv[v]
            for r in range(R):
                for u in range(U):
                    for v in T.vectorized(L):
                        Y[b, n0 + r, _px(P, p0, u, L, v, cl)] = out(
                            acc[r, u, v], bias_b, Res, b, n0 + r, _px(P, p0, u, L, v, cl)
                        )

    images = _images(g, prep, tile, big, lanes, extra, chunks, mu, vw)

    @T.prim_func
    def kernel(
        x: T.handle,
        data: T.Buffer((nnzb, R, C), "float32"),
        indices: T.Buffer((nnzb,), "int32"),
        indptr: T.Buffer((nbr + 1,), "int32"),
        bias_b: T.Buffer((N,), "float32"),
        r: T.handle,
        y: T.handle,
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        B = T.int64()
        X = T.match_buffer(x, (B, g.C, HW), "float32")
        Res = T.match_buffer(r, (B, N, P), "float32")
        Y = T.match_buffer(y, (B, N, P), "float32")
        col = T.alloc_buffer(col_shape, "float32")
        images(X, col, Y, Res, data, indices, indptr, bias_b, B, g.H, g.W, g.OH, g.OW)

    if g.dynamic:
        return runtime_kernel(g, N, [((nnzb, R, C), "float32"), ((nnzb,), "int32"), ((nbr + 1,), "int32")], images)
    return kernel


def nm(
    g: ConvGeometry, N: int, n: int, m: int, vw: int, epi: ValueEpilogueFn, bias: bool, residual: bool, mu: int
) -> Any:  # noqa: N803, E501
    """N:M along input channels (im2col rows): every output row has exactly G*n slots, no bound checks."""
    from tvm.script import tirx as T

    prep, col_shape = _im2col_macro(g)
    load, out = _helpers(g, epi, bias, residual)
    K, P, HW = g.K, g.P, g.H * g.W  # noqa: N806
    groups = -(-K // m)
    slots = groups * n
    big, lanes, extra = pixel_tiles(P, vw, mu)
    chunks, per = _split(N, big + len(extra))

    @T.macro
    def tile(X, col, Y, Res, values, positions, _unused, bias_b, b, c, p0, U, L, cl, P):  # noqa: N803
        for i in range(T.min(per, N - c * per)):
            row = c * per + i
            acc = T.alloc_buffer((U, L), "float32", scope="local")
            for u in T.unroll(U):
                for v in T.vectorized(L):
                    acc[u, v] = T.float32(0)
            for gi in range(groups):
                for t in T.unroll(n):
                    for u in T.unroll(U):
                        for v in T.vectorized(L):
                            acc[u, v] = acc[u, v] + values[row, gi * n + t] * load(
                                X,
                                col,
                                b,
                                gi * m + T.Cast("int32", positions[row, gi * n + t]),
                                _px(P, p0, u, L, v, cl),
                            )
            for u in range(U):
                for v in T.vectorized(L):
                    Y[b, row, _px(P, p0, u, L, v, cl)] = out(acc[u, v], bias_b, Res, b, row, _px(P, p0, u, L, v, cl))

    images = _images(g, prep, tile, big, lanes, extra, chunks, mu, vw)

    @T.prim_func
    def kernel(
        x: T.handle,
        values: T.Buffer((N, slots), "float32"),
        positions: T.Buffer((N, slots), "uint8"),
        bias_b: T.Buffer((N,), "float32"),
        r: T.handle,
        y: T.handle,
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        B = T.int64()
        X = T.match_buffer(x, (B, g.C, HW), "float32")
        Res = T.match_buffer(r, (B, N, P), "float32")
        Y = T.match_buffer(y, (B, N, P), "float32")
        col = T.alloc_buffer(col_shape, "float32")
        images(X, col, Y, Res, values, positions, positions, bias_b, B, g.H, g.W, g.OH, g.OW)

    if g.dynamic:
        return runtime_kernel(g, N, [((N, slots), "float32"), ((N, slots), "uint8")], images)
    return kernel
