// The CUDA path of the kernel library: a CUDA artifact's kernels.fatbin run through the CUDA driver API.
// libcuda.so.1 is dlopen()ed only when an artifact targets CUDA, so the EP builds and runs without the CUDA toolkit
// or a driver (docs/internals.md, "CUDA artifact"). Each call copies X (and bias / residual) to the GPU, launches,
// and copies Y back; packed weights are uploaded once per node. The rest of the graph stays on ORT's CPU EP.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <dlpack/dlpack.h>

namespace sparsec {

struct CudaApi;

// One line of kernels.launch (written by targets/cuda/build.py).
struct CudaLaunch {
  std::string entry;
  unsigned block[3] = {1, 1, 1};
  unsigned grid_y = 1;  // blocks over N; grid.x = ceil(M / rows_per_block)
  long long rows_per_block = 1;
  std::vector<std::string> abi;     // the kernel ABI order of the DLTensor arguments (X, packed..., Y)
  std::vector<std::string> params;  // the device entry's parameter order (names from abi, and M)
};

class CudaModule;

// One kernel of the module. Call is serialized per kernel (a mutex): correct first, concurrent later.
class CudaKernel {
 public:
  CudaKernel(std::shared_ptr<CudaModule> module, void* fn, CudaLaunch launch)
      : module_(std::move(module)), fn_(fn), launch_(std::move(launch)) {}
  ~CudaKernel();
  bool Call(DLTensor* const* args, int num_args, std::string* err) const;

 private:
  std::shared_ptr<CudaModule> module_;
  void* fn_;
  CudaLaunch launch_;
  mutable std::mutex mu_;
  mutable std::map<int, std::pair<const void*, unsigned long long>> constants_;  // ABI index -> (host, device)
};

class CudaModule : public std::enable_shared_from_this<CudaModule> {
 public:
  // Loads the driver, device 0's primary context, the fatbin at `path` and `kernels.launch` beside it.
  // nullptr + a one-line *err (no driver: says so) on failure.
  static std::shared_ptr<CudaModule> Load(const std::string& path, std::string* err);
  std::shared_ptr<const CudaKernel> Find(const std::string& symbol, std::string* err);
  const CudaApi& api() const { return *api_; }
  void* context() const { return ctx_; }
  bool Check(int result, const char* what, std::string* err) const;

 private:
  const CudaApi* api_ = nullptr;
  void* ctx_ = nullptr;
  void* module_ = nullptr;
  std::string path_;
  std::map<std::string, CudaLaunch> launches_;  // by kernel symbol
};

}  // namespace sparsec
