"""The ARM target: aarch64 + NEON kernels cross-compiled with aarch64-linux-gnu-g++, shipped with an aarch64 EP."""
