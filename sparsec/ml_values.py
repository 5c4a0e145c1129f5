"""Non-tensor values (ai.onnx.ml sequences and maps, e.g. ZipMap's list of {label: probability}) as the ARM host app
(examples/arm_host/json_value.h) and the wasm node runner (targets/wasm/js/run_node.mjs) write them, read back as
ORT's Python API returns them:

- ``{"seq": [ELEMENT, ...]}`` -> list
- ``{"map": [[KEY, VALUE], ...]}`` -> dict
- ``{"dtype": "<f4", "dims": [...], "data": [...]}`` -> numpy array (``"str"``: an object array of strings)
"""

from __future__ import annotations

from typing import Any

import numpy as np


def from_json(v: dict[str, Any]) -> Any:
    """The Python value of one encoded output."""
    if "seq" in v:
        return [from_json(e) for e in v["seq"]]
    if "map" in v:
        return {k: val for k, val in v["map"]}
    if v["dtype"] == "str":
        return np.array(v["data"], dtype=object).reshape(v["dims"])
    return np.array(v["data"], dtype=np.dtype(v["dtype"])).reshape(v["dims"])
