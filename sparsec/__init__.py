"""sparsec: an ahead-of-time compiler for sparse neural networks (ONNX in, TVM kernels + ORT plugin EP out)."""

__version__ = "0.1.0"
