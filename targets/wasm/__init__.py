"""The WebAssembly target: wasm32 + SIMD128 kernels run by a JS runner beside onnxruntime-web (internals.md)."""
