"""The CUDA target: sparse kernels for NVIDIA GPUs (sm_80+), generated with TVM and compiled with nvcc."""
