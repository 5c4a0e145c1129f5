#include "json_value.h"

#include <cinttypes>
#include <cstdio>
#include <stdexcept>
#include <vector>

namespace arm_host {
namespace {

std::string Quoted(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string Number(double v, int digits) {
  if (v != v) return "NaN";  // Python's json reads NaN and +-Infinity
  if (v > 1.7976931348623157e308) return "Infinity";
  if (v < -1.7976931348623157e308) return "-Infinity";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

// Element i of a tensor as a JSON scalar.
std::string Element(const Ort::Value& t, ONNXTensorElementDataType type, size_t i) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
      return Number(t.GetTensorData<float>()[i], 9);
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE:
      return Number(t.GetTensorData<double>()[i], 17);
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
      return std::to_string(t.GetTensorData<int64_t>()[i]);
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
      return std::to_string(t.GetTensorData<int32_t>()[i]);
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING:
      return Quoted(t.GetStringTensorElement(i));
    default:
      throw std::runtime_error("non-tensor output holds element type " + std::to_string(type) +
                               " (JSON output takes float, double, int64, int32 and string)");
  }
}

std::string Descr(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "<f4";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "<f8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "<i8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "<i4";
    default: return "str";
  }
}

}  // namespace

std::string ValueJson(const Ort::Value& value, OrtAllocator* alloc) {
  const ONNXType kind = value.GetTypeInfo().GetONNXType();
  if (kind == ONNX_TYPE_SEQUENCE) {
    std::string out = "{\"seq\": [";
    const size_t n = value.GetCount();
    for (size_t i = 0; i < n; ++i)
      out += (i ? ", " : "") + ValueJson(value.GetValue(static_cast<int>(i), alloc), alloc);
    return out + "]}";
  }
  if (kind == ONNX_TYPE_MAP) {
    Ort::Value keys = value.GetValue(0, alloc), vals = value.GetValue(1, alloc);
    const auto ktype = keys.GetTensorTypeAndShapeInfo().GetElementType();
    const auto vtype = vals.GetTensorTypeAndShapeInfo().GetElementType();
    const size_t n = keys.GetTensorTypeAndShapeInfo().GetElementCount();
    std::string out = "{\"map\": [";
    for (size_t i = 0; i < n; ++i)
      out += std::string(i ? ", " : "") + "[" + Element(keys, ktype, i) + ", " + Element(vals, vtype, i) + "]";
    return out + "]}";
  }
  if (kind != ONNX_TYPE_TENSOR)
    throw std::runtime_error("an output of ONNX type " + std::to_string(kind) + " cannot be written");
  auto info = value.GetTensorTypeAndShapeInfo();
  const auto type = info.GetElementType();
  std::string out = "{\"dtype\": \"" + Descr(type) + "\", \"dims\": [";
  const auto dims = info.GetShape();
  for (size_t i = 0; i < dims.size(); ++i) out += (i ? ", " : "") + std::to_string(dims[i]);
  out += "], \"data\": [";
  const size_t n = info.GetElementCount();
  for (size_t i = 0; i < n; ++i) out += (i ? ", " : "") + Element(value, type, i);
  return out + "]}";
}

}  // namespace arm_host
