#include "ep.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "compute.h"
#include "node_config.h"
#include "weights.h"

namespace sparsec {
namespace {

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool ParseTasks(const char* text, int* out) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < 1 || v > 1024) return false;
  *out = static_cast<int>(v);
  return true;
}

void Log(const OrtLogger* logger, OrtLoggingLevel level, const std::string& msg) {
  if (!logger) return;
  OrtStatus* st = g_api->Logger_LogMessage(logger, level, (std::string(kEpName) + ": " + msg).c_str(),
                                           ORT_FILE, __LINE__, "SparsecEp");
  if (st) g_api->ReleaseStatus(st);
}

OrtStatus* NodeError(const std::string& node, const std::string& msg) {
  return MakeStatus(ORT_INVALID_GRAPH, "node '" + node + "': " + msg);
}

bool ToDType(ONNXTensorElementDataType t, DType* out) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: *out = DType::kF32; return true;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: *out = DType::kI32; return true;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: *out = DType::kU8; return true;
    default: return false;
  }
}

// Copies a constant initializer into EP-owned memory. *is_const=false (and no copy) for a run-time value.
OrtStatus* CopyIfConstant(const std::string& node, const OrtValueInfo* vi, HostArray* out, bool* is_const) {
  const char* name = nullptr;
  SPARSEC_RETURN_IF_ERROR(g_api->GetValueInfoName(vi, &name));
  bool c = false;
  SPARSEC_RETURN_IF_ERROR(g_api->ValueInfo_IsConstantInitializer(vi, &c));
  *is_const = c;
  if (!c) return nullptr;
  const OrtValue* v = nullptr;
  SPARSEC_RETURN_IF_ERROR(g_api->ValueInfo_GetInitializerValue(vi, &v));
  if (!v) return NodeError(node, std::string("initializer '") + name + "' has no value");
  TensorInfo info;
  SPARSEC_RETURN_IF_ERROR(GetTensorInfo(v, &info));
  DType dt;
  if (!ToDType(info.type, &dt))
    return NodeError(node, std::string("initializer '") + name + "' has unsupported element type " +
                               ElementTypeName(info.type));
  for (int64_t d : info.shape)
    if (d < 0) return NodeError(node, std::string("initializer '") + name + "' has a negative dimension");
  const void* data = nullptr;
  SPARSEC_RETURN_IF_ERROR(g_api->GetTensorData(v, &data));
  *out = CopyToHost(name, dt, info.shape, data);
  if (!out->data) return NodeError(node, std::string("out of memory copying '") + name + "'");
  return nullptr;
}

// Index of the value named `name` among the fused node's inputs (where ORT feeds it at run time).
OrtStatus* FusedInputIndex(const std::string& node, const OrtNode* fused, const char* name, size_t* index) {
  size_t n = 0;
  SPARSEC_RETURN_IF_ERROR(g_api->Node_GetNumInputs(fused, &n));
  std::vector<const OrtValueInfo*> ins(n);
  if (n) SPARSEC_RETURN_IF_ERROR(g_api->Node_GetInputs(fused, ins.data(), n));
  for (size_t i = 0; i < n; ++i) {
    const char* in_name = nullptr;
    if (!ins[i]) continue;
    SPARSEC_RETURN_IF_ERROR(g_api->GetValueInfoName(ins[i], &in_name));
    if (in_name && std::strcmp(in_name, name) == 0) {
      *index = i;
      return nullptr;
    }
  }
  return NodeError(node, std::string("input '") + name + "' is not an input of the fused node");
}

OrtStatus* BindOperand(const std::string& node, const OrtNode* fused, const OrtValueInfo* vi, Operand* op) {
  if (!vi) return NodeError(node, "an input is empty");
  op->present = true;
  SPARSEC_RETURN_IF_ERROR(CopyIfConstant(node, vi, &op->value, &op->constant));
  if (op->constant) return nullptr;
  const char* name = nullptr;
  SPARSEC_RETURN_IF_ERROR(g_api->GetValueInfoName(vi, &name));
  return FusedInputIndex(node, fused, name, &op->input_index);
}

}  // namespace

bool IsSparsecNode(const OrtNode* node) {
  const char *op = nullptr, *domain = nullptr;
  OrtStatus* st = g_api->Node_GetOperatorType(node, &op);
  if (!st) st = g_api->Node_GetDomain(node, &domain);
  if (st) {
    g_api->ReleaseStatus(st);
    return false;
  }
  if (!op || !domain || std::strcmp(op, "EPContext") != 0 || std::strcmp(domain, "com.microsoft") != 0) return false;
  std::string source, ctx;
  bool has_source = false, has_ctx = false;
  st = ReadStringAttr(node, "source", &source, &has_source);
  if (!st) st = ReadStringAttr(node, "ep_cache_context", &ctx, &has_ctx);
  if (st) {
    g_api->ReleaseStatus(st);
    return false;
  }
  return has_source && has_ctx && source == kEpName && IsSparsecContext(ctx);
}

OrtStatus* ReadEpOptions(const OrtSessionOptions* session_options, EpOptions* out) {
  if (!session_options) return nullptr;
  OrtKeyValuePairs* kvps = nullptr;
  SPARSEC_RETURN_IF_ERROR(g_api->GetSessionOptionsConfigEntries(session_options, &kvps));
  const char* const* keys = nullptr;
  const char* const* values = nullptr;
  size_t n = 0;
  g_api->GetKeyValuePairs(kvps, &keys, &values, &n);
  // ORT prefixes provider options with "ep.<ep name>." and lowercases the name; compare case-insensitively
  // so either spelling works.
  const std::string prefix = "ep." + Lower(kEpName) + ".";
  for (size_t i = 0; i < n; ++i) {
    std::string key = Lower(keys[i]);
    if (key.rfind(prefix, 0) != 0) continue;
    std::string opt = key.substr(prefix.size());
    if (opt == "kernel_library") out->kernel_library = values[i];
    if (opt == "tvm_runtime") out->tvm_runtime = values[i];
    if (opt == "parallel_tasks" && !ParseTasks(values[i], &out->parallel_tasks)) {
      const std::string msg = std::string("EP option parallel_tasks must be an integer in 1..1024, got '") +
                              values[i] + "'";  // before the pairs (and values[i]) are released
      g_api->ReleaseKeyValuePairs(kvps);
      return MakeStatus(ORT_INVALID_ARGUMENT, msg);
    }
  }
  g_api->ReleaseKeyValuePairs(kvps);
  return nullptr;
}

SparsecEp::SparsecEp(EpOptions options, const OrtLogger* logger)
    : OrtEp{}, options_(std::move(options)), logger_(logger) {
  ort_version_supported = ORT_API_VERSION;
  GetName = [](const OrtEp*) noexcept { return kEpName; };
  GetCapability = GetCapabilityImpl;
  Compile = CompileImpl;
  ReleaseNodeComputeInfos = ReleaseInfosImpl;
}

OrtStatus* ORT_API_CALL SparsecEp::GetCapabilityImpl(OrtEp* self, const OrtGraph* graph,
                                                     OrtEpGraphSupportInfo* info) noexcept {
  try {
    size_t n = 0;
    SPARSEC_RETURN_IF_ERROR(g_api->Graph_GetNumNodes(graph, &n));
    std::vector<const OrtNode*> nodes(n);
    if (n) SPARSEC_RETURN_IF_ERROR(g_api->Graph_GetNodes(graph, nodes.data(), n));
    // The EP copies the packed arrays at Compile, so ORT may free its own copies of them.
    OrtNodeFusionOptions fusion{};
    fusion.ort_version_supported = ORT_API_VERSION;
    fusion.drop_constant_initializers = true;
    size_t claimed = 0;
    for (const OrtNode* node : nodes) {
      if (!IsSparsecNode(node)) continue;
      // One fused node per sparsec node: each keeps its own kernel and inputs.
      SPARSEC_RETURN_IF_ERROR(g_ep_api->EpGraphSupportInfo_AddNodesToFuse(info, &node, 1, &fusion));
      ++claimed;
    }
    Log(static_cast<SparsecEp*>(self)->logger_, ORT_LOGGING_LEVEL_VERBOSE,
        "claimed " + std::to_string(claimed) + " of " + std::to_string(n) + " nodes");
    return nullptr;
  } catch (const std::exception& e) {
    return MakeStatus(ORT_EP_FAIL, std::string("GetCapability: ") + e.what());
  }
}

std::shared_ptr<KernelLibrary> SparsecEp::Library(std::string* err) {
  std::lock_guard<std::mutex> lock(lib_mu_);
  if (!lib_) lib_ = KernelLibrary::Load(options_.tvm_runtime, options_.kernel_library, options_.parallel_tasks, err);
  return lib_;
}

OrtStatus* SparsecEp::CompileOne(const OrtGraph* graph, const OrtNode* fused, OrtNodeComputeInfo** out) {
  size_t n = 0;
  SPARSEC_RETURN_IF_ERROR(g_api->Graph_GetNumNodes(graph, &n));
  if (n != 1) return MakeStatus(ORT_EP_FAIL, "expected one node per fused graph, got " + std::to_string(n));
  const OrtNode* node = nullptr;
  SPARSEC_RETURN_IF_ERROR(g_api->Graph_GetNodes(graph, &node, 1));

  auto k = std::make_shared<NodeKernel>();
  SPARSEC_RETURN_IF_ERROR(NodeName(node, &k->node_name));
  const std::string& name = k->node_name;
  std::string ctx, err;
  bool found = false;
  SPARSEC_RETURN_IF_ERROR(ReadStringAttr(node, "ep_cache_context", &ctx, &found));
  if (!found || !ParseNodeConfig(ctx, &k->cfg, &err)) return NodeError(name, found ? err : "no ep_cache_context");

  size_t num_in = 0;
  SPARSEC_RETURN_IF_ERROR(g_api->Node_GetNumInputs(node, &num_in));
  const size_t num_packed = PackedArrayCount(k->cfg.format);
  const bool int8 = k->cfg.format.kind == FormatKind::kInt8;
  const size_t expected = 1 + num_packed + (int8 ? 1 : 0) + (k->cfg.scale ? 1 : 0) + (k->cfg.bias ? 1 : 0) +
                          (k->cfg.residual ? 1 : 0);
  if (num_in != expected)
    return NodeError(name, "has " + std::to_string(num_in) + " inputs, format " + k->cfg.format.text +
                               (k->cfg.scale ? " with scale" : "") + " with bias=" + std::to_string(k->cfg.bias) +
                               " residual=" + std::to_string(k->cfg.residual) + " needs " + std::to_string(expected));
  std::vector<const OrtValueInfo*> ins(num_in);
  SPARSEC_RETURN_IF_ERROR(g_api->Node_GetInputs(node, ins.data(), num_in));

  SPARSEC_RETURN_IF_ERROR(BindOperand(name, fused, ins[0], &k->x));
  for (size_t i = 0; i < num_packed; ++i) {
    const OrtValueInfo* vi = ins[1 + i];
    if (!vi) return NodeError(name, "packed array input " + std::to_string(1 + i) + " is empty");
    HostArray a;
    bool is_const = false;
    SPARSEC_RETURN_IF_ERROR(CopyIfConstant(name, vi, &a, &is_const));
    if (!is_const) {
      const char* in_name = nullptr;
      SPARSEC_RETURN_IF_ERROR(g_api->GetValueInfoName(vi, &in_name));
      return NodeError(name, std::string("packed array '") + in_name + "' must be a constant initializer");
    }
    k->packed.push_back(std::move(a));
  }
  if (!ValidatePacked(k->cfg, k->packed, &err)) return NodeError(name, err);
  size_t next = 1 + num_packed;
  if (int8) SPARSEC_RETURN_IF_ERROR(BindOperand(name, fused, ins[next++], &k->zero_point));
  if (k->cfg.scale) {
    SPARSEC_RETURN_IF_ERROR(BindOperand(name, fused, ins[next++], &k->scale));
    const HostArray& s = k->scale.value;  // a constant scale is checked now, a run-time one on every run
    if (k->scale.constant && (s.dtype != DType::kF32 || s.NumElements() != k->cfg.scale))
      return NodeError(name, "scale '" + s.name + "' must be float32 with " + std::to_string(k->cfg.scale) +
                                 " element(s), got " + DTypeName(s.dtype) + ShapeToString(s.shape));
  }
  if (k->cfg.bias) {
    SPARSEC_RETURN_IF_ERROR(BindOperand(name, fused, ins[next++], &k->bias));
    // A constant bias is checked now (session creation) rather than failing every run.
    const HostArray& b = k->bias.value;
    if (k->bias.constant && (b.dtype != DType::kF32 || b.NumElements() != k->cfg.N))
      return NodeError(name, "bias '" + b.name + "' must be float32 with N=" + std::to_string(k->cfg.N) +
                                 " elements, got " + DTypeName(b.dtype) + ShapeToString(b.shape));
  }
  if (k->cfg.residual) SPARSEC_RETURN_IF_ERROR(BindOperand(name, fused, ins[next++], &k->residual));

  std::shared_ptr<KernelLibrary> lib = Library(&err);
  if (!lib) return NodeError(name, err);
  k->fn = lib->Find(k->cfg.kernel, &err);
  if (!k->fn) return NodeError(name, err);
  Log(logger_, ORT_LOGGING_LEVEL_INFO, "compiled node '" + name + "' (" + k->cfg.format.text + ", K=" +
                                           std::to_string(k->cfg.K) + ", N=" + std::to_string(k->cfg.N) + ")");
  *out = NewComputeInfo(std::move(k));
  return nullptr;
}

OrtStatus* ORT_API_CALL SparsecEp::CompileImpl(OrtEp* self_, const OrtGraph** graphs, const OrtNode** fused_nodes,
                                               size_t count, OrtNodeComputeInfo** infos,
                                               OrtNode** /*ep_context_nodes: the model already is one*/) noexcept {
  auto* self = static_cast<SparsecEp*>(self_);
  for (size_t i = 0; i < count; ++i) infos[i] = nullptr;
  OrtStatus* st = nullptr;
  try {
    for (size_t i = 0; i < count && !st; ++i) st = self->CompileOne(graphs[i], fused_nodes[i], &infos[i]);
  } catch (const std::exception& e) {
    st = MakeStatus(ORT_EP_FAIL, std::string("Compile: ") + e.what());
  }
  if (st) {  // ORT does not release infos of a failed Compile: free what was built
    for (size_t i = 0; i < count; ++i) {
      if (infos[i]) DeleteComputeInfo(infos[i]);
      infos[i] = nullptr;
    }
  }
  return st;
}

void ORT_API_CALL SparsecEp::ReleaseInfosImpl(OrtEp*, OrtNodeComputeInfo** infos, size_t count) noexcept {
  for (size_t i = 0; i < count; ++i)
    if (infos[i]) DeleteComputeInfo(infos[i]);
}

}  // namespace sparsec
