"""sparsec node encoding: the ep_cache_context string round-trips and rejects what the EP would reject."""

from __future__ import annotations

import pytest

from sparsec.node import SparseNodeInfo, is_sparsec, node_attributes


def test_roundtrip() -> None:
    info = SparseNodeInfo("sparsec_k3", "bsr:16x1", 384, 1536, bias=True, act="clip", clip_min=0.0, clip_max=6.0)
    text = info.encode()
    assert text.startswith("sparsec=1;") and " " not in text
    assert SparseNodeInfo.decode(text) == info
    attrs = node_attributes(info, "layer0")
    assert is_sparsec("EPContext", "com.microsoft", attrs)
    assert not is_sparsec("EPContext", "com.microsoft", {**attrs, "source": "OtherEP"})
    assert not is_sparsec("MatMul", "", attrs)


@pytest.mark.parametrize("bad", [{"act": "tanh"}, {"kernel": "bad name"}])
def test_rejects(bad: dict[str, str]) -> None:
    args = {"kernel": "k", "format": "csr", "K": 2, "N": 3, **bad}
    with pytest.raises(ValueError):
        SparseNodeInfo(**args)  # type: ignore[arg-type]


def test_decode_foreign() -> None:
    with pytest.raises(ValueError):
        SparseNodeInfo.decode("vendor=1;kernel=x")
