// Minimal .npy (NumPy format 1.0/2.0) reader and writer: little-endian, C order, the dtypes ORT models take.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace arm_host {

struct NpyArray {
  std::string descr;            // numpy dtype string, e.g. "<f4", "<i8", "|b1"
  std::vector<int64_t> shape;
  std::vector<char> data;       // raw element bytes, C order
};

// Throws std::runtime_error with a one-line message on a malformed or unsupported file.
NpyArray ReadNpy(const std::string& path);
void WriteNpy(const std::string& path, const NpyArray& array);
size_t ItemSize(const std::string& descr);  // 0 for an unsupported dtype

}  // namespace arm_host
