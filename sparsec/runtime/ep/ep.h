// The OrtEp of one session: claims the sparsec nodes (GetCapability) and prepares them to run (Compile).
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "kernel_lib.h"
#include "ort_util.h"

namespace sparsec {

// Session-level EP options (SessionOptions.add_provider_for_devices(devs, {...})).
struct EpOptions {
  std::string kernel_library;  // "kernel_library": absolute path of the artifact's kernels.so
  std::string tvm_runtime;     // "tvm_runtime": absolute path of libtvm_runtime.so
  int parallel_tasks = 0;      // "parallel_tasks": tasks per kernel parallel loop (the session's threads); 0: one per hardware thread
};

// Reads the EP options from the session options handed to CreateEp (ORT stores them as session config
// entries "ep.<ep name, lowercased>.<key>").
OrtStatus* ReadEpOptions(const OrtSessionOptions* session_options, EpOptions* out);

class SparsecEp : public OrtEp {
 public:
  SparsecEp(EpOptions options, const OrtLogger* logger);

 private:
  static OrtStatus* ORT_API_CALL GetCapabilityImpl(OrtEp* self, const OrtGraph* graph,
                                                   OrtEpGraphSupportInfo* info) noexcept;
  static OrtStatus* ORT_API_CALL CompileImpl(OrtEp* self, const OrtGraph** graphs, const OrtNode** fused_nodes,
                                             size_t count, OrtNodeComputeInfo** infos,
                                             OrtNode** ep_context_nodes) noexcept;
  static void ORT_API_CALL ReleaseInfosImpl(OrtEp* self, OrtNodeComputeInfo** infos, size_t count) noexcept;

  // The kernel library, loaded on first use (a session without sparsec nodes never needs it).
  std::shared_ptr<KernelLibrary> Library(std::string* err);
  OrtStatus* CompileOne(const OrtGraph* graph, const OrtNode* fused_node, OrtNodeComputeInfo** info);

  EpOptions options_;
  const OrtLogger* logger_;
  std::mutex lib_mu_;
  std::shared_ptr<KernelLibrary> lib_;
};

// Whether ORT's node is a sparsec node (EPContext, com.microsoft, source=SparsecEP, context "sparsec=1...").
bool IsSparsecNode(const OrtNode* node);

}  // namespace sparsec
