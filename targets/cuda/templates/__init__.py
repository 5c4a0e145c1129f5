"""TVMScript GPU kernel templates, one module per format (docs/internals.md, "CUDA kernels")."""
