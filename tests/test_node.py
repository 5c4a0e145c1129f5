"""sparsec node encoding: the ep_cache_context string round-trips and rejects what the EP would reject."""

from __future__ import annotations

import numpy as np
import pytest

from sparsec.conv import ConvGeometry
from sparsec.layer import Epilogue, Kernel, Quant
from sparsec.node import attributes, decode, encode, is_sparsec


def test_roundtrip() -> None:
    kernel = Kernel("sparsec_k3", "bsr:16x1", 384, 1536, epilogue=Epilogue(bias=True, act="clip", clip_max=6.0))
    text = encode(kernel)
    assert text.startswith("sparsec=1;") and " " not in text
    assert decode(text) == kernel
    attrs = attributes(kernel, "layer0")
    assert is_sparsec("EPContext", "com.microsoft", attrs)
    assert not is_sparsec("EPContext", "com.microsoft", {**attrs, "source": "OtherEP"})
    assert not is_sparsec("MatMul", "", attrs)


def test_conv_roundtrip_and_matmul_keys() -> None:
    g = ConvGeometry(8, 5, 7, 3, 3, 1, 2, 1, 1, 1, 1, 1, 1)
    conv = Kernel("k", "csr", g.K, 16, conv=g)
    assert decode(encode(conv)) == conv and ";op=conv;C=8;H=5;W=7;" in encode(conv)
    assert "op=" not in encode(Kernel("k", "csr", 4, 4))  # the MatMul contract has no op or conv keys


@pytest.mark.parametrize("bad", [{"epilogue": "tanh"}, {"symbol": "bad name"}, {"K": 3, "conv": "geometry"}])
def test_rejects(bad: dict[str, str]) -> None:
    args: dict[str, object] = {"symbol": "k", "format": "csr", "K": 2, "N": 3}
    with pytest.raises(ValueError):
        if bad.get("epilogue"):
            Kernel(**args, epilogue=Epilogue(act=bad["epilogue"]))  # type: ignore[arg-type]
        elif bad.get("conv"):
            Kernel(**{**args, "K": 3}, conv=ConvGeometry(2, 4, 4, 3, 3))  # type: ignore[arg-type]
        else:
            Kernel(**{**args, **bad})  # type: ignore[arg-type]


def test_decode_foreign() -> None:
    with pytest.raises(ValueError):
        decode("vendor=1;kernel=x")


def test_fused_quantizers_roundtrip_and_stay_out_of_plain_kernels() -> None:
    quant = (Quant("product", float(np.float32(0.37)), -3, -128, 127), Quant("bias", 0.0625, 10, 0, 255))
    kernel = Kernel("k", "csr", 8, 4, epilogue=Epilogue(bias=True, quant=quant))
    text = encode(kernel)
    assert ";quant=product:" in text and decode(text) == kernel and decode(text).epilogue.quant == quant
    assert "quant" not in encode(Kernel("k", "csr", 8, 4)) and "quant" not in Kernel("k", "csr", 8, 4).key()
    assert kernel.key()["quant"] == [q.text() for q in quant]
    gelu = Epilogue(
        act="gelu",
        quant=(*quant, *(Quant(s, 0.5, 0, -128, 127) for s in ("erf", "erf_add", "gelu_mul"))),
        gelu_constants=(1.4142135, 1.0000001, 0.5),
    )
    text = encode(Kernel("k", "csr", 8, 4, epilogue=gelu))
    assert ";gelu_constants=1.4142135|1.0000001|0.5" in text and decode(text).epilogue == gelu
    with pytest.raises(ValueError, match="GELU with quantized steps"):
        Epilogue(act="relu", quant=gelu.quant, gelu_constants=gelu.gelu_constants)
    with pytest.raises(ValueError, match="GELU with quantized steps"):
        Epilogue(act="gelu", quant=gelu.quant[:3], gelu_constants=gelu.gelu_constants)
    with pytest.raises(ValueError):
        Quant("gelu", 0.5, 0, -128, 127)
    with pytest.raises(ValueError):
        Quant("bias", 0.5, 300, 0, 255)
