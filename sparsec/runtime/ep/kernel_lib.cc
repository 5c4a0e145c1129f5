#include "kernel_lib.h"

#include "cuda_lib.h"
#include "parallel.h"

#include <dlfcn.h>

#include <map>
#include <optional>
#include <vector>
#include <mutex>
#include <sys/stat.h>

#include <tvm/ffi/c_api.h>
#include <tvm/ffi/container/tensor.h>  // AnyView from DLTensor*
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

namespace ffi = tvm::ffi;

namespace sparsec {

struct KernelLibrary::Impl {
  std::optional<ffi::Module> module;  // a TVM kernel library (kernels.so)
  std::shared_ptr<CudaModule> cuda;   // or a CUDA artifact's kernels.fatbin
};

struct KernelFunction::Impl {
  std::shared_ptr<KernelLibrary::Impl> lib;  // the module must outlive the function
  std::optional<ffi::Function> fn;
  std::shared_ptr<const CudaKernel> cuda;
};

namespace {

bool FileExists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// dlopen()ed handles are never closed: kernels and TVM's thread pool may still reference them at exit.
bool LoadTvmRuntimeOnce(const std::string& tvm_runtime, std::string* err) {
  static std::mutex mu;
  static std::map<std::string, std::string> done;  // path -> "" (ok) or the error
  std::lock_guard<std::mutex> lock(mu);
  auto it = done.find(tvm_runtime);
  if (it != done.end()) {
    *err = it->second;
    return err->empty();
  }
  std::string& result = done[tvm_runtime];
  // libtvm_ffi is already mapped (the EP links it), possibly with local scope when ORT dlopen()ed the EP.
  // Re-open the SAME file (found through one of its symbols) with RTLD_GLOBAL so libtvm_runtime and the
  // kernels bind to this one instance.
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&TVMFFIFunctionCall), &info) && info.dli_fname) {
    dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
  }
  const char* rt = tvm_runtime.empty() ? "libtvm_runtime.so" : tvm_runtime.c_str();
  if (!tvm_runtime.empty() && !FileExists(tvm_runtime)) {
    result = "TVM runtime library not found: " + tvm_runtime + " (EP option tvm_runtime)";
  } else if (!dlopen(rt, RTLD_NOW | RTLD_GLOBAL)) {
    const char* e = dlerror();
    result = std::string("cannot load the TVM runtime ") + rt + ": " + (e ? e : "unknown error") +
             (tvm_runtime.empty() ? " (set EP option tvm_runtime to the path of libtvm_runtime.so)" : "");
  }
  *err = result;
  return result.empty();
}

}  // namespace

std::shared_ptr<KernelLibrary> KernelLibrary::Load(const std::string& tvm_runtime, const std::string& path,
                                                   int parallel_tasks, std::string* err) {
  if (path.empty()) {
    *err = "EP option 'kernel_library' is not set: pass add_provider_for_devices(devices, "
           "{'kernel_library': <path of kernels.so>, 'tvm_runtime': <path of libtvm_runtime.so>})";
    return nullptr;
  }
  if (!FileExists(path)) {
    *err = "kernel library not found: " + path;
    return nullptr;
  }
  auto lib = std::make_shared<KernelLibrary>();
  lib->path_ = path;
  if (EndsWith(path, ".fatbin")) {  // a CUDA artifact (docs/internals.md, "CUDA artifact"): no TVM runtime needed
    auto cuda = CudaModule::Load(path, err);
    if (!cuda) return nullptr;
    lib->impl_ = std::make_shared<Impl>(Impl{std::nullopt, std::move(cuda)});
    return lib;
  }
  if (!LoadTvmRuntimeOnce(tvm_runtime, err)) return nullptr;
  try {
    lib->impl_ = std::make_shared<Impl>(Impl{ffi::Module::LoadFromFile(path), nullptr});
  } catch (const ffi::Error& e) {
    *err = "cannot load kernel library " + path + ": " + e.kind() + ": " + e.message();
    return nullptr;
  } catch (const std::exception& e) {
    *err = "cannot load kernel library " + path + ": " + e.what();
    return nullptr;
  }
  if (!RouteParallelLaunch(path, parallel_tasks, err)) return nullptr;
  return lib;
}

std::shared_ptr<const KernelFunction> KernelLibrary::Find(const std::string& name, std::string* err) const {
  if (impl_->cuda) {
    auto kernel = impl_->cuda->Find(name, err);
    if (!kernel) return nullptr;
    return std::make_shared<const KernelFunction>(
        std::make_shared<KernelFunction::Impl>(KernelFunction::Impl{impl_, std::nullopt, std::move(kernel)}));
  }
  try {
    ffi::Optional<ffi::Function> f = (*impl_->module)->GetFunction(name);
    if (!f.has_value()) {
      *err = "kernel function '" + name + "' not found in " + path_;
      return nullptr;
    }
    auto impl = std::make_shared<KernelFunction::Impl>(KernelFunction::Impl{impl_, *f, nullptr});
    return std::make_shared<const KernelFunction>(std::move(impl));
  } catch (const ffi::Error& e) {
    *err = "looking up kernel function '" + name + "' in " + path_ + ": " + e.message();
    return nullptr;
  }
}

bool KernelFunction::Call(DLTensor* const* args, int num_args, std::string* err) const {
  if (impl_->cuda) return impl_->cuda->Call(args, num_args, err);
  std::vector<ffi::AnyView> packed(args, args + num_args);
  try {
    ffi::Any ret;
    impl_->fn->CallPacked(packed.data(), num_args, &ret);
  } catch (const ffi::Error& e) {
    *err = e.kind() + ": " + e.message();
    return false;
  } catch (const std::exception& e) {
    *err = e.what();
    return false;
  }
  return true;
}

}  // namespace sparsec
