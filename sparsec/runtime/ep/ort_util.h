// Thin helpers over the ORT C API shared by every file of the EP: the API tables, status creation,
// and reading what the EP needs from OrtNode / OrtValue (attributes, tensor shape and element type).
#pragma once

#include "onnxruntime_c_api.h"
// onnxruntime_c_api.h already includes onnxruntime_ep_c_api.h (which has no include guard).

#include <cstdint>
#include <string>
#include <vector>

namespace sparsec {

inline constexpr const char* kEpName = "SparsecEP";

// Set once by CreateEpFactories (before any other entry point can run), read-only afterwards.
extern const OrtApi* g_api;
extern const OrtEpApi* g_ep_api;

// An OrtStatus error carrying "SparsecEP: <msg>" (every message names the EP so users know who complains).
OrtStatus* MakeStatus(OrtErrorCode code, const std::string& msg);

#define SPARSEC_RETURN_IF_ERROR(expr)         \
  do {                                        \
    OrtStatus* _sparsec_status = (expr);      \
    if (_sparsec_status) return _sparsec_status; \
  } while (0)

// Node helpers. An absent attribute gives found=false and no error.
OrtStatus* NodeName(const OrtNode* node, std::string* name);
OrtStatus* ReadStringAttr(const OrtNode* node, const char* attr, std::string* value, bool* found);

// Element type and dims of a tensor OrtValue.
struct TensorInfo {
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::vector<int64_t> shape;
  int64_t NumElements() const;
};
OrtStatus* GetTensorInfo(const OrtValue* value, TensorInfo* info);

std::string ShapeToString(const std::vector<int64_t>& shape);
const char* ElementTypeName(ONNXTensorElementDataType type);

}  // namespace sparsec
