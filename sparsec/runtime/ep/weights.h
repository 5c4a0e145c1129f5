// The packed weight arrays of one sparsec node, owned by the EP.
// ORT frees constant initializers after Compile (drop_constant_initializers) and an OrtValue read through the
// graph API dies with the OrtGraph, so the EP copies each array once into its own 64-byte aligned buffer
// (TVM kernels may assume aligned data) and checks it against the layout in docs/internals.md before any kernel
// reads it: a corrupt index would otherwise become an out-of-bounds read inside the kernel.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "node_config.h"

namespace sparsec {

enum class DType { kF32, kI32, kU8 };
const char* DTypeName(DType t);
size_t DTypeSize(DType t);

// A C-contiguous host tensor with immutable contents after construction (safe to share across threads).
struct HostArray {
  std::string name;  // initializer name, for messages
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::shared_ptr<void> data;  // never null, even for zero elements (kernels get a valid pointer)
  int64_t NumElements() const;
  size_t NumBytes() const { return static_cast<size_t>(NumElements()) * DTypeSize(dtype); }
  template <typename T>
  const T* As() const { return static_cast<const T*>(data.get()); }
};

// 64-byte aligned, zero-initialized host buffer of at least `bytes` bytes.
std::shared_ptr<void> AllocAligned(size_t bytes);

// Copies `bytes` bytes from src into a new HostArray.
HostArray CopyToHost(std::string name, DType dtype, std::vector<int64_t> shape, const void* src);

// Number of packed arrays the format stores, in kernel argument order (csr/bsr: 3, nm: 2).
size_t PackedArrayCount(const FormatSpec& f);

// Checks dtypes, shapes and index contents of the packed arrays against cfg (format, K, N).
// On failure returns false with a message naming the array and the first bad entry.
bool ValidatePacked(const NodeConfig& cfg, const std::vector<HostArray>& arrays, std::string* err);

}  // namespace sparsec
