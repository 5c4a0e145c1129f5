#include "compute.h"

#include "parallel.h"

#include <dlpack/dlpack.h>

#include <cstdint>
#include <cstring>

namespace sparsec {
namespace {

constexpr uintptr_t kAlign = 64;  // what TVM assumes for tensor data

// One operand as the kernel will see it for this call.
struct View {
  const void* data = nullptr;
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::vector<int64_t> shape;
  int64_t NumElements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

ONNXTensorElementDataType OnnxType(DType t) {
  switch (t) {
    case DType::kF32: return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    case DType::kI32: return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
    case DType::kU8: return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
  }
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
}

DLDataType DlType(DType t) {
  switch (t) {
    case DType::kF32: return DLDataType{kDLFloat, 32, 1};
    case DType::kI32: return DLDataType{kDLInt, 32, 1};
    case DType::kU8: return DLDataType{kDLUInt, 8, 1};
  }
  return DLDataType{kDLFloat, 32, 1};
}

OrtStatus* Fail(const NodeKernel& k, OrtErrorCode code, const std::string& msg) {
  return MakeStatus(code, "node '" + k.node_name + "': " + msg);
}

OrtStatus* Resolve(const NodeKernel& k, const Operand& op, const char* what, OrtKernelContext* ctx, View* v) {
  if (op.constant) {
    v->data = op.value.data.get();
    v->type = OnnxType(op.value.dtype);
    v->shape = op.value.shape;
    return nullptr;
  }
  const OrtValue* val = nullptr;
  SPARSEC_RETURN_IF_ERROR(g_api->KernelContext_GetInput(ctx, op.input_index, &val));
  if (!val) return Fail(k, ORT_INVALID_ARGUMENT, std::string("input ") + what + " is missing");
  TensorInfo info;
  SPARSEC_RETURN_IF_ERROR(GetTensorInfo(val, &info));
  v->type = info.type;
  v->shape = std::move(info.shape);
  return g_api->GetTensorData(val, &v->data);
}

DLTensor MakeDl(const void* data, DLDataType dtype, std::vector<int64_t>* shape) {
  DLTensor t{};
  t.data = const_cast<void*>(data);
  t.device = DLDevice{kDLCPU, 0};
  t.ndim = static_cast<int32_t>(shape->size());
  t.dtype = dtype;
  t.shape = shape->data();
  t.strides = nullptr;  // C-contiguous
  t.byte_offset = 0;
  return t;
}

// ORT's own buffers are 64-byte aligned, but a caller's input may not be (e.g. a numpy slice passed through
// without copy). Copy those into a call-local aligned buffer rather than hand TVM a pointer it assumes aligned.
const void* Aligned(const void* p, size_t bytes, std::vector<std::shared_ptr<void>>* keep) {
  if (reinterpret_cast<uintptr_t>(p) % kAlign == 0) return p;
  std::shared_ptr<void> buf = AllocAligned(bytes);
  if (!buf) return nullptr;
  std::memcpy(buf.get(), p, bytes);
  keep->push_back(buf);
  return buf.get();
}

OrtStatus* RunNode(const NodeKernel& k, OrtKernelContext* ctx) {
  const int64_t K = k.cfg.K, N = k.cfg.N;
  View x;
  SPARSEC_RETURN_IF_ERROR(Resolve(k, k.x, "X", ctx, &x));
  const bool int8 = k.cfg.format.kind == FormatKind::kInt8;  // uint8 X and its zero point (node_config.h)
  const ONNXTensorElementDataType x_type = int8 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  if (x.type != x_type)
    return Fail(k, ORT_INVALID_ARGUMENT,
                std::string("X must be ") + ElementTypeName(x_type) + ", got " + ElementTypeName(x.type));
  View zp;
  if (int8) {
    SPARSEC_RETURN_IF_ERROR(Resolve(k, k.zero_point, "x_zero_point", ctx, &zp));
    if (zp.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 || zp.NumElements() != 1)
      return Fail(k, ORT_INVALID_ARGUMENT, std::string("x_zero_point must be one uint8 value, got ") +
                                               ElementTypeName(zp.type) + ShapeToString(zp.shape));
  }
  View scale;
  if (k.cfg.scale) {
    SPARSEC_RETURN_IF_ERROR(Resolve(k, k.scale, "scale", ctx, &scale));
    if (scale.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || scale.NumElements() != k.cfg.scale)
      return Fail(k, ORT_INVALID_ARGUMENT, "scale must be float32 with " + std::to_string(k.cfg.scale) +
                                               " element(s), got " + ElementTypeName(scale.type) +
                                               ShapeToString(scale.shape));
  }
  int64_t M = 1;
  std::vector<int64_t> y_shape = x.shape;
  // What the kernel sees: matmul X [M, K] -> Y [M, N]; conv X [B, C, H*W] -> Y [B, N, OH*OW] (same memory).
  std::vector<int64_t> x_dl, y_dl;
  int64_t OH = 0, OW = 0;
  if (k.cfg.conv) {
    const ConvGeom& g = k.cfg.geom;
    if (g.dynamic) {  // the kernel takes X as [B, C, H, W] and derives OH, OW itself
      if (x.shape.size() != 4 || x.shape[1] != g.C)
        return Fail(k, ORT_INVALID_ARGUMENT,
                    "X has shape " + ShapeToString(x.shape) + ", the convolution needs [batch, " +
                        std::to_string(g.C) + ", height, width]");
      if (!ConvOutput(g, x.shape[2], x.shape[3], &OH, &OW))
        return Fail(k, ORT_INVALID_ARGUMENT,
                    "X has shape " + ShapeToString(x.shape) + ": the convolution's output would be empty or too large");
      x_dl = x.shape;
    } else {
      if (x.shape.size() != 4 || x.shape[1] != g.C || x.shape[2] != g.H || x.shape[3] != g.W)
        return Fail(k, ORT_INVALID_ARGUMENT,
                    "X has shape " + ShapeToString(x.shape) + ", the convolution needs [batch, " +
                        std::to_string(g.C) + ", " + std::to_string(g.H) + ", " + std::to_string(g.W) + "]");
      OH = g.OH;
      OW = g.OW;
      x_dl = {x.shape[0], g.C, g.H * g.W};
    }
    M = x.shape[0];
    y_shape = {M, N, OH, OW};
    y_dl = {M, N, OH * OW};
  } else {
    if (x.shape.empty() || x.shape.back() != K)
      return Fail(k, ORT_INVALID_ARGUMENT,
                  "X has shape " + ShapeToString(x.shape) + ", its last dimension must be K=" + std::to_string(K));
    for (size_t i = 0; i + 1 < x.shape.size(); ++i) M *= x.shape[i];
    y_shape.back() = N;
    x_dl = {M, K};
    y_dl = {M, N};
  }
  const int64_t x_elems = x.NumElements(), y_elems = k.cfg.conv ? M * N * OH * OW : M * N;

  View bias, residual;
  if (k.bias.present) {
    SPARSEC_RETURN_IF_ERROR(Resolve(k, k.bias, "bias", ctx, &bias));
    if (bias.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || bias.NumElements() != N)
      return Fail(k, ORT_INVALID_ARGUMENT, std::string("bias must be float32 with N=") + std::to_string(N) +
                                               " elements, got " + ElementTypeName(bias.type) +
                                               ShapeToString(bias.shape));
  }
  if (k.residual.present) {
    SPARSEC_RETURN_IF_ERROR(Resolve(k, k.residual, "residual", ctx, &residual));
    if (residual.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || residual.shape != y_shape)
      return Fail(k, ORT_INVALID_ARGUMENT, "residual must be float32" + ShapeToString(y_shape) + " like the output, got " +
                                               ElementTypeName(residual.type) + ShapeToString(residual.shape));
  }

  OrtValue* y_val = nullptr;
  SPARSEC_RETURN_IF_ERROR(g_api->KernelContext_GetOutput(ctx, 0, y_shape.data(), y_shape.size(), &y_val));
  void* y = nullptr;
  SPARSEC_RETURN_IF_ERROR(g_api->GetTensorMutableData(y_val, &y));
  if (M == 0) return nullptr;  // empty batch: nothing to compute (the kernel ABI promises M >= 1 only)

  std::vector<std::shared_ptr<void>> keep;  // call-local copies; no state shared between concurrent calls
  const size_t y_bytes = static_cast<size_t>(y_elems) * sizeof(float);
  const void* xp = Aligned(x.data, static_cast<size_t>(x_elems) * (int8 ? 1 : sizeof(float)), &keep);
  const void* sp = k.cfg.scale ? Aligned(scale.data, static_cast<size_t>(k.cfg.scale) * sizeof(float), &keep) : nullptr;
  const void* bp = k.bias.present ? Aligned(bias.data, static_cast<size_t>(N) * sizeof(float), &keep) : nullptr;
  const void* rp = k.residual.present ? Aligned(residual.data, y_bytes, &keep) : nullptr;
  void* yp = y;
  if (reinterpret_cast<uintptr_t>(y) % kAlign != 0) {
    keep.push_back(AllocAligned(y_bytes));
    yp = keep.back().get();
  }
  if (!xp || (k.cfg.scale && !sp) || (k.bias.present && !bp) || (k.residual.present && !rp) || !yp)
    return Fail(k, ORT_FAIL, "out of memory for aligned copies");

  // Shapes must outlive the DLTensors that point at them: reserve so push_back never reallocates.
  std::vector<std::vector<int64_t>> shapes;
  shapes.reserve(k.packed.size() + 6);
  std::vector<DLTensor> tensors;
  tensors.reserve(k.packed.size() + 6);
  const DLDataType f32{kDLFloat, 32, 1};
  shapes.push_back(x_dl);
  tensors.push_back(MakeDl(xp, int8 ? DlType(DType::kU8) : f32, &shapes.back()));
  for (const HostArray& a : k.packed) {
    shapes.push_back(a.shape);
    tensors.push_back(MakeDl(a.data.get(), DlType(a.dtype), &shapes.back()));
  }
  if (int8) {  // one byte: no alignment to keep
    shapes.push_back({1});
    tensors.push_back(MakeDl(zp.data, DlType(DType::kU8), &shapes.back()));
  }
  if (k.cfg.scale) {
    shapes.push_back({k.cfg.scale});
    tensors.push_back(MakeDl(sp, f32, &shapes.back()));
  }
  if (k.bias.present) {
    shapes.push_back({N});
    tensors.push_back(MakeDl(bp, f32, &shapes.back()));
  }
  if (k.residual.present) {
    shapes.push_back(y_dl);
    tensors.push_back(MakeDl(rp, f32, &shapes.back()));
  }
  shapes.push_back(y_dl);
  tensors.push_back(MakeDl(yp, f32, &shapes.back()));

  std::vector<DLTensor*> args;
  for (DLTensor& t : tensors) args.push_back(&t);
  std::string err;
  ParallelScope on_ort_pool(ctx);
  if (!k.fn->Call(args.data(), static_cast<int>(args.size()), &err))
    return Fail(k, ORT_FAIL, "kernel '" + k.cfg.kernel + "' failed: " + err);
  if (yp != y) std::memcpy(y, yp, y_bytes);
  return nullptr;
}

struct ComputeInfo : OrtNodeComputeInfo {
  std::shared_ptr<const NodeKernel> kernel;

  explicit ComputeInfo(std::shared_ptr<const NodeKernel> k) : OrtNodeComputeInfo{}, kernel(std::move(k)) {
    ort_version_supported = ORT_API_VERSION;
    // No per-state data: the NodeKernel is immutable, so the "state" is the info itself.
    CreateState = [](OrtNodeComputeInfo* self, OrtNodeComputeContext*, void** state) noexcept -> OrtStatus* {
      *state = self;
      return nullptr;
    };
    ReleaseState = [](OrtNodeComputeInfo*, void*) noexcept {};
    Compute = [](OrtNodeComputeInfo* self, void*, OrtKernelContext* ctx) noexcept -> OrtStatus* {
      const NodeKernel& k = *static_cast<ComputeInfo*>(self)->kernel;
      try {
        return RunNode(k, ctx);
      } catch (const std::exception& e) {  // e.g. std::bad_alloc: never let an exception cross the C ABI
        return Fail(k, ORT_FAIL, std::string("internal error: ") + e.what());
      }
    };
  }
};

}  // namespace

OrtNodeComputeInfo* NewComputeInfo(std::shared_ptr<const NodeKernel> kernel) {
  return new ComputeInfo(std::move(kernel));
}

void DeleteComputeInfo(OrtNodeComputeInfo* info) { delete static_cast<ComputeInfo*>(info); }

}  // namespace sparsec
