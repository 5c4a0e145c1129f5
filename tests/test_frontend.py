"""Frontend: bad models give one-line SparsecErrors; external data is read only from inside the model folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.synthetic import transformer_ffn
from sparsec.errors import SparsecError
from sparsec.frontend import load_model


def test_loads_valid(tmp_path: Path) -> None:
    p = tmp_path / "m.onnx"
    onnx.save(transformer_ffn(), str(p))
    m = load_model(p)
    assert any(n.op_type == "MatMul" for n in m.graph.node)


@pytest.mark.parametrize(
    "content,match",
    [(b"", "not a valid ONNX model"), (b"\x08\x07garbage\xff\xff", "not a valid ONNX model")],
)
def test_malformed(tmp_path: Path, content: bytes, match: str) -> None:
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with pytest.raises(SparsecError, match=match):
        load_model(p)


def test_truncated(tmp_path: Path) -> None:
    data = transformer_ffn().SerializeToString()
    p = tmp_path / "t.onnx"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(SparsecError) as e:
        load_model(p)
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SparsecError, match="no such file"):
        load_model(tmp_path / "nope.onnx")


def _external_model(location: str) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value=location)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[w],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_external_data_escape_refused(tmp_path: Path, location: str) -> None:
    d = tmp_path / "model"
    d.mkdir()
    (tmp_path / "secret.bin").write_bytes(np.ones(16, np.float32).tobytes())
    p = d / "m.onnx"
    onnx.save(_external_model(location), str(p))
    with pytest.raises(SparsecError, match="outside the model directory"):
        load_model(p)


def test_external_data_inside_ok(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(np.ones(16, np.float32).tobytes())
    p = tmp_path / "m.onnx"
    onnx.save(_external_model("w.bin"), str(p))
    m = load_model(p)
    assert numpy_helper.to_array(m.graph.initializer[0]).sum() == 16


def test_external_data_symlink_out_refused(tmp_path: Path) -> None:
    d = tmp_path / "model"
    d.mkdir()
    (tmp_path / "secret.bin").write_bytes(np.ones(16, np.float32).tobytes())
    (d / "w.bin").symlink_to(tmp_path / "secret.bin")  # the name is inside, the data is not
    p = d / "m.onnx"
    onnx.save(_external_model("w.bin"), str(p))
    with pytest.raises(SparsecError, match="outside the model directory"):
        load_model(p)
