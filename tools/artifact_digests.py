"""Record what every compile of a test run produced, to show that a refactor changed no artifact byte.

As a pytest plugin it wraps ``sparsec.compiler.compile_model`` before the tests import it and appends one JSON line
per compile to ``$SPARSEC_DIGESTS`` (key: sha256 of the source model, the options and ``dims``; value: sha256 of every
file of the artifact). Compiles with ``--tune`` are skipped (their choices come from timings).

    SPARSEC_DIGESTS=/tmp/before.jsonl pytest -q -p tools.artifact_digests      # on the old commit
    SPARSEC_DIGESTS=/tmp/after.jsonl pytest -q -p tools.artifact_digests       # on the new one
    python -m tools.artifact_digests /tmp/before.jsonl /tmp/after.jsonl         # compare: exit 1 on a difference
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _install() -> None:
    out = os.environ.get("SPARSEC_DIGESTS")
    if not out:
        return
    import sparsec.compiler as compiler

    original = compiler.compile_model

    def recording(model_path: Any, out_dir: Any, options: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(model_path, out_dir, options, *args, **kwargs)
        if not options.tune:
            opts = {k: v for k, v in options.to_json().items() if k != "versions"}
            dims = kwargs.get("dims", args[1] if len(args) > 1 else None)
            key = hashlib.sha256(
                _sha(Path(model_path)).encode() + json.dumps([opts, dims], sort_keys=True).encode()
            ).hexdigest()
            files = {p.name: _sha(p) for p in sorted(Path(result.artifact).iterdir()) if p.is_file()}
            with open(out, "a") as f:
                f.write(json.dumps({"key": key, "model": str(model_path), "options": opts, "files": files}) + "\n")
        return result

    compiler.compile_model = recording


_install()


def compare(before: Path, after: Path) -> int:
    """Compare two recordings on the compiles both made; prints each difference, returns the number of them."""

    def load(p: Path) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for line in p.read_text().splitlines():
            row = json.loads(line)
            rows.setdefault(row["key"], row)
        return rows

    a, b = load(before), load(after)
    common = sorted(set(a) & set(b))
    bad = 0
    for key in common:
        if a[key]["files"] != b[key]["files"]:
            bad += 1
            diff = sorted(
                n
                for n in set(a[key]["files"]) | set(b[key]["files"])
                if a[key]["files"].get(n) != b[key]["files"].get(n)
            )
            print(f"DIFFERS {a[key]['model']} {a[key]['options']}: {', '.join(diff)}")
    print(f"{len(common)} compiles in both recordings ({len(a)} before, {len(b)} after), {bad} differ")
    return bad


if __name__ == "__main__":
    sys.exit(1 if compare(Path(sys.argv[1]), Path(sys.argv[2])) else 0)
