"""Fetch PaddleOCR models as paddle2onnx exported them, from the PyPI wheel ``rapidocr-onnxruntime``.

Real exports with the quirks of that exporter: every weight in a Constant node, a batch declared -1, unnamed ('?')
and ``p2o.DynamicDimension`` height/width, Reshapes to computed shapes. The wheel is downloaded with pip into a
cache folder and the three models are extracted; nothing is committed.

- ``cls``: ch_ppocr_mobile_v2.0_cls (text direction classifier, input [-1, 3, ?, ?], usually 1x3x48x192)
- ``rec``: ch_PP-OCRv4_rec (recogniser: convs + a transformer block, input [N, 3, ?, W], usually 1x3x48x320)
- ``det``: ch_PP-OCRv4_det (DB text detector, input [N, 3, H, W], e.g. 1x3x320x320)

``python -m models.paddleocr NAME [DEST]`` prints the path of the model file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .wheel import extract_from_wheel

WHEEL = "rapidocr-onnxruntime==1.4.4"
MEMBERS = {
    "cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx",
    "rec": "ch_PP-OCRv4_rec_infer.onnx",
    "det": "ch_PP-OCRv4_det_infer.onnx",
}
SHAPES = {"cls": [1, 3, 48, 192], "rec": [1, 3, 48, 320], "det": [1, 3, 320, 320]}  # typical inference shapes
DEFAULT_DIR = Path(__file__).resolve().parent.parent / ".cache" / "models" / "paddleocr"


def fetch_paddleocr(name: str, dest: Path = DEFAULT_DIR) -> Path:
    """Return the path of NAME.onnx (cls, rec or det), downloading and extracting the wheel the first time."""
    if name not in MEMBERS:
        raise ValueError(f"unknown PaddleOCR model {name!r} (one of {', '.join(MEMBERS)})")
    model = dest / f"{name}.onnx"
    if model.is_file():
        return model
    extract_from_wheel(WHEEL, {dest / f"{key}.onnx": suffix for key, suffix in MEMBERS.items()}, dest)
    return model


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m models.paddleocr", description=__doc__.split("\n\n")[0])
    ap.add_argument("name", choices=sorted(MEMBERS), help="which model")
    ap.add_argument("dest", nargs="?", type=Path, default=DEFAULT_DIR, help="folder to download into")
    args = ap.parse_args(argv)
    print(fetch_paddleocr(args.name, args.dest))


if __name__ == "__main__":
    main()
