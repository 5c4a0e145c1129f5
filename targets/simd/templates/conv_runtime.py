"""Conv kernels sized at run time (symbolic height and width; templates/conv.py's ``dynamic`` geometries).

The kernel takes X as [B, C, H, W] (H and W bound from the tensor), derives OH, OW and P = OH*OW, and lays out the
pixel tiles of templates/conv.py at run time: tiles of ``mu`` vectors, then single vectors, then one vector ending
at P; P < vw runs one pixel at a time. Sizes are Python-built expressions (an assignment in a TVMScript macro would
make a TIR buffer).
"""

from __future__ import annotations

from typing import Any

from sparsec.conv import ConvGeometry


def runtime_images(prep: Any, tile: Any, chunks: int, mu: int, vw: int) -> Any:
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


def runtime_kernel(g: ConvGeometry, N: int, arrays: list[tuple[tuple[int, ...], str]], images: Any) -> Any:  # noqa: N803
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
