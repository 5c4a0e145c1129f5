"""``sparsec prune`` as a function: parse, load, prune, write atomically, summarize in one line."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from .errors import SparsecError


def prune_file(model_path: str | Path, pattern_text: str, out_path: str | Path) -> str:
    """Prune ``model_path`` to ``pattern_text`` into ``out_path`` (nothing is written on failure)."""
    import onnx

    from .frontend import load_model
    from .prune import parse_pattern, prune_model

    pattern = parse_pattern(pattern_text)
    out = Path(out_path)
    if not out.parent.is_dir():
        raise SparsecError(f"{out.parent}: output directory does not exist")
    model = load_model(model_path)
    pruned, stats = prune_model(model, pattern)
    if pruned.ByteSize() > 2**31 - 1:
        raise SparsecError("the pruned model is larger than 2 GiB; store its weights as external data")
    fd, tmp = tempfile.mkstemp(prefix=".prune-", suffix=".onnx", dir=out.parent)
    os.close(fd)
    try:
        onnx.save(pruned, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    total = sum(int(math.prod(s["shape"])) for s in stats)  # type: ignore[arg-type]
    before = sum(s["density_before"] * math.prod(s["shape"]) for s in stats) / total  # type: ignore[operator]
    after = sum(s["density_after"] * math.prod(s["shape"]) for s in stats) / total  # type: ignore[operator]
    return f"pruned {len(stats)} weights ({pattern_text}): density {before:.3f} -> {after:.3f}; wrote {out}"
