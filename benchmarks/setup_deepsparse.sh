#!/usr/bin/env bash
# Creates .venv-deepsparse: DeepSparse 1.8.0 pins numpy<2, so it cannot share sparsec's .venv.
# Usage: bash benchmarks/setup_deepsparse.sh   (from the repository root; idempotent)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-python3}"
VENV=.venv-deepsparse
DEEPSPARSE_VERSION="${DEEPSPARSE_VERSION:-1.8.0}"
export NM_DISABLE_ANALYTICS=1

if [ -f "$VENV/.installed" ]; then
    echo "$VENV already set up"
    exit 0
fi
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# deepsparse 1.8.0 requires numpy<2 and an onnx it can read (<=1.14 per its metadata; pip resolves it).
"$VENV/bin/python" -m pip install --quiet "deepsparse==${DEEPSPARSE_VERSION}" "numpy<2"
"$VENV/bin/python" -c "import deepsparse, numpy, onnx; print('deepsparse', deepsparse.__version__, 'numpy', numpy.__version__, 'onnx', onnx.__version__)"
touch "$VENV/.installed"
