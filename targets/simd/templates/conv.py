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

A *dynamic* geometry (symbolic height and width) takes X as [B, C, H, W] (H and W bound from the tensor), derives
OH, OW and P in the kernel and tiles P at run time: tiles of ``mu`` vectors, then single vectors, then one vector
ending at P; P < vw runs one pixel at a time. Work split (row chunks) and ``mu`` are chosen at the size assumed for
ranking.
"""

from __future__ import annotations

from typing import Any

from sparsec.conv import ConvGeometry

from ...tir import ValueEpilogueFn

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
        return _images_dynamic(prep, tile, chunks, mu, vw)
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


def _images_dynamic(prep: Any, tile: Any, chunks: int, mu: int, vw: int) -> Any:
    """Run-time pixel tiles: ``big`` tiles of mu vectors, ``ones`` single vectors, a last vector ending at P when P
    is ragged; P < vw: pixel by pixel (one lane). (Sizes are Python-built expressions: an assignment in the macro
    would make a TIR buffer.)"""
    from tvm.script import tirx as T

    def big(P: Any) -> Any:  # noqa: N803
        return P // vw // mu

    def ones(P: Any) -> Any:  # noqa: N803
        return P // vw - P // vw // mu * mu

    def tiles(P: Any) -> Any:  # noqa: N803
        return P // vw + T.if_then_else(P % vw != 0, 1, 0) - P // vw // mu * (mu - 1)

    @T.macro
    def images(X, col, Y, Res, w0, w1, w2, bias_b, B, H, W, OH, OW):  # noqa: N803
        for b in range(B):
            prep(X, col, b, H, W, OH, OW)
            if OH * OW >= vw:
                for it in T.parallel(tiles(OH * OW) * chunks):
                    if it // chunks < big(OH * OW):
                        p0 = it // chunks * (mu * vw)
                        tile(X, col, Y, Res, w0, w1, w2, bias_b, b, it % chunks, p0, mu, vw, False, OH * OW)
                    elif it // chunks < big(OH * OW) + ones(OH * OW):
                        p1 = (it // chunks - big(OH * OW) + big(OH * OW) * mu) * vw
                        tile(X, col, Y, Res, w0, w1, w2, bias_b, b, it % chunks, p1, 1, vw, False, OH * OW)
                    else:
                        tile(X, col, Y, Res, w0, w1, w2, bias_b, b, it % chunks, OH * OW - vw, 1, vw, False, OH * OW)
            else:
                for c in T.parallel(chunks):
                    for p in range(OH * OW):
                        tile(X, col, Y, Res, w0, w1, w2, bias_b, b, c, p, 1, 1, False, OH * OW)

    return images


def _dynamic(g: ConvGeometry, N: int, arrays: list[tuple[tuple[int, ...], str]], images: Any) -> Any:  # noqa: N803
    """The kernel of a dynamic geometry: X [B, C, H, W] binds H and W, Y and Res are [B, N, OH*OW] with OH, OW
    derived from them (a tensor of another size fails the kernel's shape check); ``arrays`` are the format's packed
    weights (2 or 3), in ABI order."""
    from tvm.script import tirx as T

    eh, ew = g.pt + g.pb - g.dh * (g.kh - 1) - 1, g.pl + g.pr - g.dw * (g.kw - 1) - 1  # OH = (H + eh) // sh + 1
    (s0, t0), (s1, t1) = arrays[0], arrays[1]
    s2, t2 = arrays[2] if len(arrays) > 2 else arrays[1]
    col_k, cp = (1, 0) if g.pointwise else (g.K, 1)  # a pointwise conv reads X itself: col is a dummy [1, 1, 1]

    def oh(H: Any) -> Any:  # noqa: N803
        return (H + eh) // g.sh + 1

    def ow(W: Any) -> Any:  # noqa: N803
        return (W + ew) // g.sw + 1

    def third(a1: Any, a2: Any) -> Any:  # N:M has two arrays: its second stands in for the third (as in nm())
        return a2 if len(arrays) > 2 else a1

    @T.prim_func
    def kernel(x: T.handle, w0: T.handle, w1: T.handle, w2: T.handle, bh: T.handle, r: T.handle, y: T.handle) -> None:
        T.func_attr({"tirx.noalias": True})
        B = T.int64()
        H = T.int64()
        W = T.int64()
        X4 = T.match_buffer(x, (B, g.C, H, W), "float32")
        a0 = T.match_buffer(w0, s0, t0)
        a1 = T.match_buffer(w1, s1, t1)
        a2 = T.match_buffer(w2, s2, t2)
        bias_b = T.match_buffer(bh, (N,), "float32")
        Res = T.match_buffer(r, (B, N, oh(H) * ow(W)), "float32")
        Y = T.match_buffer(y, (B, N, oh(H) * ow(W)), "float32")
        X = T.decl_buffer((B, g.C, H * W), "float32", data=X4.data)
        col = T.alloc_buffer((1, col_k, oh(H) * ow(W) * cp + 1 - cp), "float32")
        images(X, col, Y, Res, a0, a1, third(a1, a2), bias_b, B, H, W, oh(H), ow(W))

    if len(arrays) > 2:
        return kernel
    # Two arrays: drop the unused third parameter (a parameter Var carries its buffer, as targets/tir.finish relies on)
    from tvm import tirx

    params = [p for i, p in enumerate(kernel.params) if i != 3]
    return tirx.PrimFunc(params, kernel.body, kernel.ret_type, kernel.attrs)


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
        return _dynamic(g, N, [((nnz,), "float32"), ((nnz,), "int32"), ((N + 1,), "int32")], images)
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
        return _dynamic(g, N, [((nnzb, R, C), "float32"), ((nnzb,), "int32"), ((nbr + 1,), "int32")], images)
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
        return _dynamic(g, N, [((N, slots), "float32"), ((N, slots), "uint8")], images)
    return kernel
