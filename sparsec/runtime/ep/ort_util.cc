#include "ort_util.h"

#include <sstream>

namespace sparsec {

const OrtApi* g_api = nullptr;
const OrtEpApi* g_ep_api = nullptr;

OrtStatus* MakeStatus(OrtErrorCode code, const std::string& msg) {
  return g_api->CreateStatus(code, (std::string(kEpName) + ": " + msg).c_str());
}

OrtStatus* NodeName(const OrtNode* node, std::string* name) {
  const char* n = nullptr;
  SPARSEC_RETURN_IF_ERROR(g_api->Node_GetName(node, &n));
  *name = n ? n : "";
  return nullptr;
}

OrtStatus* ReadStringAttr(const OrtNode* node, const char* attr, std::string* value, bool* found) {
  *found = false;
  const OrtOpAttr* a = nullptr;
  OrtStatus* st = g_api->Node_GetAttributeByName(node, attr, &a);
  if (st) {
    // ORT_NOT_FOUND just means "no such attribute": not an error for the caller.
    if (g_api->GetErrorCode(st) == ORT_NOT_FOUND) {
      g_api->ReleaseStatus(st);
      return nullptr;
    }
    return st;
  }
  if (!a) return nullptr;
  OrtOpAttrType type = ORT_OP_ATTR_UNDEFINED;
  SPARSEC_RETURN_IF_ERROR(g_api->OpAttr_GetType(a, &type));
  if (type != ORT_OP_ATTR_STRING) return nullptr;  // wrong type: treat as absent (the node is not ours)
  // Ask for the size first: ReadOpAttr fails with the required byte count when the buffer is too small.
  size_t needed = 0;
  st = g_api->ReadOpAttr(a, ORT_OP_ATTR_STRING, nullptr, 0, &needed);
  if (st) g_api->ReleaseStatus(st);
  std::string buf(needed, '\0');
  size_t got = 0;
  if (needed > 0) SPARSEC_RETURN_IF_ERROR(g_api->ReadOpAttr(a, ORT_OP_ATTR_STRING, buf.data(), buf.size(), &got));
  buf.resize(got);
  while (!buf.empty() && buf.back() == '\0') buf.pop_back();
  *value = std::move(buf);
  *found = true;
  return nullptr;
}

int64_t TensorInfo::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

OrtStatus* GetTensorInfo(const OrtValue* value, TensorInfo* info) {
  int is_tensor = 0;
  SPARSEC_RETURN_IF_ERROR(g_api->IsTensor(value, &is_tensor));
  if (!is_tensor) return MakeStatus(ORT_INVALID_ARGUMENT, "expected a tensor value");
  OrtTensorTypeAndShapeInfo* ti = nullptr;
  SPARSEC_RETURN_IF_ERROR(g_api->GetTensorTypeAndShape(value, &ti));
  size_t rank = 0;
  OrtStatus* st = g_api->GetTensorElementType(ti, &info->type);
  if (!st) st = g_api->GetDimensionsCount(ti, &rank);
  if (!st) {
    info->shape.assign(rank, 0);
    st = g_api->GetDimensions(ti, info->shape.data(), rank);
  }
  g_api->ReleaseTensorTypeAndShapeInfo(ti);
  return st;
}

std::string ShapeToString(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? "," : "") << shape[i];
  os << ']';
  return os.str();
}

const char* ElementTypeName(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "float64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return "int8";
    default: return "other";
  }
}

}  // namespace sparsec
