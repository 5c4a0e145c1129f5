"""mypy on the installed package layout: ``sparsec`` with ``passes/`` as ``sparsec.passes`` and ``targets/`` as
``sparsec.targets`` (pyproject's package-dir mapping, which mypy cannot follow by itself).

Builds ``.cache/typecheck/sparsec/`` out of links to the working tree, runs mypy there with pyproject's settings
and prints the findings with the files' own paths. ``make test`` runs it: ``python -m tools.typecheck``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / ".cache" / "typecheck"
MAPPED = {"passes": ROOT / "passes", "targets": ROOT / "targets"}


def build_tree() -> Path:
    """``TREE/sparsec``: a link to each entry of sparsec/ plus passes/ and targets/ as subpackages."""
    pkg = TREE / "sparsec"
    if pkg.exists():
        shutil.rmtree(pkg)
    pkg.mkdir(parents=True)
    for entry in sorted((ROOT / "sparsec").iterdir()):
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for name, path in MAPPED.items():
        (pkg / name).symlink_to(path)
    return TREE


def main() -> int:
    tree = build_tree()
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "-p", "sparsec"]
    res = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, check=False)
    out = res.stdout + res.stderr
    for name in MAPPED:  # sparsec/passes/x.py -> passes/x.py: the file as it is in the repository
        out = out.replace(f"sparsec/{name}/", f"{name}/")
    print(out, end="")
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
