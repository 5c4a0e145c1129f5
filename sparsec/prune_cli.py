"""``sparsec prune`` as a function: parse the pattern, load, prune, write atomically, summarize in one line.

Magnitude pruning without fine-tuning loses accuracy: the output is for trying the compiler, not a substitute for
pruning with fine-tuning.
"""

from __future__ import annotations

import math
import os
import uuid
from pathlib import Path

from .errors import SparsecError
from .frontend import MAX_BYTES, load_model
from .prune import PrunePattern, PruneStats, parse_pattern, prune_model


def check_output(out: Path) -> None:
    if not out.parent.is_dir():
        raise SparsecError(f"{out.parent}: output directory does not exist")
    if out.is_dir():
        raise SparsecError(f"{out}: is a directory, expected an .onnx file path")


def _check_size(model_bytes_size: int, out: Path) -> None:
    """Refuse models protobuf cannot write as one message (prune always embeds every tensor)."""
    if model_bytes_size > MAX_BYTES:
        raise SparsecError(
            f"{out}: the pruned model would be {model_bytes_size / 2**30:.1f} GiB with its weights embedded, "
            "over protobuf's 2 GiB limit; sparsec prune cannot write it"
        )


def write_atomic(out: Path, data: bytes) -> None:
    """Write ``data`` to a temporary sibling of ``out`` and rename it into place; nothing half-written on failure."""
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies, like a plain open()
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except OSError as e:
        raise SparsecError(f"{out}: cannot write ({e.strerror or type(e).__name__})") from None
    finally:
        tmp.unlink(missing_ok=True)


def summarize(stats: list[PruneStats], pattern: PrunePattern, out: Path) -> str:
    """One factual line: how many weights, how many values, overall density before and after."""
    sizes = [math.prod(s["shape"]) for s in stats]
    total = sum(sizes)
    before = sum(s["density_before"] * n for s, n in zip(stats, sizes, strict=True)) / total
    after = sum(s["density_after"] * n for s, n in zip(stats, sizes, strict=True)) / total
    noun = "weight" if len(stats) == 1 else "weights"
    return f"pruned {len(stats)} {noun} ({pattern}): {total:,} values, density {before:.1%} -> {after:.1%}; wrote {out}"


def prune_file(model_path: str | Path, pattern_text: str, out_path: str | Path) -> str:
    """Prune ``model_path`` to ``pattern_text`` into ``out_path`` (may equal ``model_path``); returns a summary line.

    The pattern is checked before the model is read. The output embeds every tensor (external data is read in) and
    is written atomically: on any failure the previous ``out_path``, if any, is left as it was.
    """
    pattern = parse_pattern(pattern_text)
    src, out = Path(model_path), Path(out_path)
    check_output(out)
    model = load_model(src)
    pruned, stats = prune_model(model, pattern, label=str(src))
    _check_size(pruned.ByteSize(), out)
    write_atomic(out, pruned.SerializeToString())
    return summarize(stats, pattern, out)
