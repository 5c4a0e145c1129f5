// Runs the parallel loops of TVM kernels on ONNX Runtime's intra-op thread pool.
//
// A TVM kernel with a T.parallel loop calls the function pointer __TVMBackendParallelLaunch that its library
// exports (TVM's runtime fills it in when the library loads). Left alone, that is TVM's own thread pool, whose
// workers then fight ORT's spinning workers for the same cores (so sessions had to turn ORT's spinning off, which
// made every dense op of the model slower). RouteParallelLaunch points it at a launcher that hands the loop's
// tasks to KernelContext_ParallelFor of the node being computed: one pool for the whole model.
#pragma once

#include <string>

#include "ort_util.h"

namespace sparsec {

// Re-points the parallel launcher of the already loaded library `path` (dlopen RTLD_NOLOAD). `tasks` is how many
// tasks one parallel loop is split into (ORT's pool spreads them over its threads; <= 0: the hardware thread
// count). The count is process-wide: the last library routed sets it. false + *err on failure.
bool RouteParallelLaunch(const std::string& path, int tasks, std::string* err);

// While alive, parallel loops of kernels called on this thread run on `ctx`'s thread pool. Without a scope (any
// other caller) they run on TVM's pool as before.
class ParallelScope {
 public:
  explicit ParallelScope(const OrtKernelContext* ctx);
  ~ParallelScope();
  ParallelScope(const ParallelScope&) = delete;
  ParallelScope& operator=(const ParallelScope&) = delete;

 private:
  const OrtKernelContext* saved_;
};

}  // namespace sparsec
