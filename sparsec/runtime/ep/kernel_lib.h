// The kernel library of an artifact (kernels.so, exported by TVM; or a CUDA artifact's kernels.fatbin, run through
// cuda_lib) and the functions the EP calls in it.
// tvm-ffi headers stay inside kernel_lib.cc: the rest of the EP sees plain C++ (faster builds, one place that
// knows about tvm::ffi exceptions).
#pragma once

#include <memory>
#include <string>

#include <dlpack/dlpack.h>  // DLTensor (a typedef of an unnamed struct: cannot be forward-declared)

namespace sparsec {

// One PackedFunc of the kernel library. Immutable; Call is safe from several threads at once.
class KernelFunction {
 public:
  struct Impl;
  explicit KernelFunction(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  // Calls the kernel with DLTensor* arguments. A tvm::ffi::Error (e.g. the kernel's own shape checks) becomes
  // false + *err; nothing is thrown.
  bool Call(DLTensor* const* args, int num_args, std::string* err) const;

 private:
  std::shared_ptr<Impl> impl_;  // keeps the library loaded while any function of it is alive
};

class KernelLibrary {
 public:
  // Loads libtvm_ffi (promoted to RTLD_GLOBAL) and libtvm_runtime at `tvm_runtime` (RTLD_GLOBAL) once per
  // process, then the kernel library `path`. Kernels call back into the runtime (__TVMBackendParallelLaunch,
  // workspace allocation): without it a T.parallel kernel segfaults. Empty `tvm_runtime` falls back to the
  // loader's search path. The library's parallel loops are routed to ORT's thread pool (parallel.h), split into
  // `parallel_tasks` tasks (<= 0: one per hardware thread). nullptr + *err naming the path on failure.
  static std::shared_ptr<KernelLibrary> Load(const std::string& tvm_runtime, const std::string& path,
                                             int parallel_tasks, std::string* err);
  // The function `name`, or nullptr + *err naming the function and the library.
  std::shared_ptr<const KernelFunction> Find(const std::string& name, std::string* err) const;
  const std::string& path() const { return path_; }

  struct Impl;

 private:
  std::string path_;
  std::shared_ptr<Impl> impl_;
};

}  // namespace sparsec
