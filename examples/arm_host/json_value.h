// Non-tensor outputs (ai.onnx.ml sequences and maps, e.g. skl2onnx's ZipMap) written as JSON:
//   sequence -> {"seq": [ELEMENT, ...]}
//   map      -> {"map": [[KEY, VALUE], ...]}           (keys and values read element-wise from the map's tensors)
//   tensor   -> {"dtype": "<f4", "dims": [...], "data": [...]}   (strings as JSON strings)
// Floats are printed with enough digits to read back the same float32 / float64.
#pragma once

#include <onnxruntime_cxx_api.h>

#include <string>

namespace arm_host {

// Throws std::runtime_error with a one-line message for element types it cannot print.
std::string ValueJson(const Ort::Value& value, OrtAllocator* alloc);

}  // namespace arm_host
