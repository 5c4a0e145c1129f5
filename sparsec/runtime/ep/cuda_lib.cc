#include "cuda_lib.h"

#include <dlfcn.h>

#include <cstring>
#include <fstream>
#include <sstream>

namespace sparsec {

// The handful of driver API entry points the EP uses (the CUDA toolkit is not needed to build the EP).
struct CudaApi {
  using Ptr = unsigned long long;
  int (*cuInit)(unsigned);
  int (*cuDeviceGet)(int*, int);
  int (*cuDevicePrimaryCtxRetain)(void**, int);
  int (*cuCtxSetCurrent)(void*);
  int (*cuModuleLoadData)(void**, const void*);
  int (*cuModuleGetFunction)(void**, void*, const char*);
  int (*cuMemAlloc)(Ptr*, size_t);
  int (*cuMemFree)(Ptr);
  int (*cuMemcpyHtoD)(Ptr, const void*, size_t);
  int (*cuMemcpyDtoH)(void*, Ptr, size_t);
  int (*cuLaunchKernel)(void*, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void*, void**,
                        void**);
  int (*cuCtxSynchronize)();
  int (*cuGetErrorString)(int, const char**);
};

namespace {

const CudaApi* LoadApi(std::string* err) {
  static std::mutex mu;
  static CudaApi api;
  static std::string error;
  static bool tried = false;
  std::lock_guard<std::mutex> lock(mu);
  if (!tried) {
    tried = true;
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);  // never closed
    if (!lib) {
      error = "no NVIDIA driver (libcuda.so.1) was found";
    } else {
      auto sym = [&](void* fp, const char* name) {
        void* s = dlsym(lib, name);
        if (!s && error.empty()) error = std::string("the NVIDIA driver lacks ") + name;
        std::memcpy(fp, &s, sizeof(s));
      };
      sym(&api.cuInit, "cuInit");
      sym(&api.cuDeviceGet, "cuDeviceGet");
      sym(&api.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
      sym(&api.cuCtxSetCurrent, "cuCtxSetCurrent");
      sym(&api.cuModuleLoadData, "cuModuleLoadData");
      sym(&api.cuModuleGetFunction, "cuModuleGetFunction");
      sym(&api.cuMemAlloc, "cuMemAlloc_v2");
      sym(&api.cuMemFree, "cuMemFree_v2");
      sym(&api.cuMemcpyHtoD, "cuMemcpyHtoD_v2");
      sym(&api.cuMemcpyDtoH, "cuMemcpyDtoH_v2");
      sym(&api.cuLaunchKernel, "cuLaunchKernel");
      sym(&api.cuCtxSynchronize, "cuCtxSynchronize");
      sym(&api.cuGetErrorString, "cuGetErrorString");
      if (error.empty() && api.cuInit(0) != 0) error = "the NVIDIA driver failed to initialize (no GPU?)";
    }
  }
  if (!error.empty()) {
    *err = "sparsec: this artifact targets CUDA but " + error;
    return nullptr;
  }
  return &api;
}

std::vector<std::string> SplitCsv(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

// kernels.launch: "symbol entry bx by bz grid_y rows_per_block abi,csv params,csv" per line.
bool ReadLaunches(const std::string& path, std::map<std::string, CudaLaunch>* out, std::string* err) {
  std::ifstream in(path);
  if (!in) {
    *err = "launch metadata not found: " + path;
    return false;
  }
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::stringstream ss(line);
    std::string symbol, abi, params;
    CudaLaunch l;
    if (!(ss >> symbol >> l.entry >> l.block[0] >> l.block[1] >> l.block[2] >> l.grid_y >> l.rows_per_block >> abi >>
          params) ||
        l.rows_per_block < 1) {
      *err = "bad line in " + path + ": " + line;
      return false;
    }
    l.abi = SplitCsv(abi);
    l.params = SplitCsv(params);
    (*out)[symbol] = l;
  }
  return true;
}

size_t Bytes(const DLTensor* t) {
  size_t n = 1;
  for (int i = 0; i < t->ndim; ++i) n *= static_cast<size_t>(t->shape[i]);
  return n * ((t->dtype.bits * t->dtype.lanes + 7) / 8);
}

}  // namespace

bool CudaModule::Check(int result, const char* what, std::string* err) const {
  if (result == 0) return true;
  const char* msg = nullptr;
  api_->cuGetErrorString(result, &msg);
  *err = std::string(what) + " failed: CUDA error " + std::to_string(result) + " (" + (msg ? msg : "?") + ")";
  return false;
}

std::shared_ptr<CudaModule> CudaModule::Load(const std::string& path, std::string* err) {
  const CudaApi* api = LoadApi(err);
  if (!api) return nullptr;
  auto m = std::make_shared<CudaModule>();
  m->api_ = api;
  m->path_ = path;
  std::string dir = path.substr(0, path.find_last_of('/') + 1);
  if (!ReadLaunches(dir + "kernels.launch", &m->launches_, err)) return nullptr;
  std::ifstream in(path, std::ios::binary);
  std::string image((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  image.push_back('\0');
  int dev = 0;
  if (!m->Check(api->cuDeviceGet(&dev, 0), "cuDeviceGet", err) ||
      !m->Check(api->cuDevicePrimaryCtxRetain(&m->ctx_, dev), "cuDevicePrimaryCtxRetain", err) ||
      !m->Check(api->cuCtxSetCurrent(m->ctx_), "cuCtxSetCurrent", err) ||
      !m->Check(api->cuModuleLoadData(&m->module_, image.data()), "loading kernels.fatbin (cuModuleLoadData)", err))
    return nullptr;
  return m;
}

std::shared_ptr<const CudaKernel> CudaModule::Find(const std::string& symbol, std::string* err) {
  auto it = launches_.find(symbol);
  if (it == launches_.end()) {
    *err = "kernel '" + symbol + "' not in the launch metadata of " + path_;
    return nullptr;
  }
  void* fn = nullptr;
  if (!Check(api_->cuCtxSetCurrent(ctx_), "cuCtxSetCurrent", err) ||
      !Check(api_->cuModuleGetFunction(&fn, module_, it->second.entry.c_str()), "cuModuleGetFunction", err))
    return nullptr;
  return std::make_shared<const CudaKernel>(shared_from_this(), fn, it->second);
}

CudaKernel::~CudaKernel() {
  if (constants_.empty()) return;
  module_->api().cuCtxSetCurrent(module_->context());  // the session may end on another thread
  for (auto& kv : constants_) module_->api().cuMemFree(kv.second.second);
}

bool CudaKernel::Call(DLTensor* const* args, int num_args, std::string* err) const {
  const CudaApi& api = module_->api();
  if (num_args != static_cast<int>(launch_.abi.size())) {
    *err = "expected " + std::to_string(launch_.abi.size()) + " arguments, got " + std::to_string(num_args);
    return false;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!module_->Check(api.cuCtxSetCurrent(module_->context()), "cuCtxSetCurrent", err)) return false;
  const long long m = args[0]->shape[0];  // X is [M, K] (a conv never runs on cuda)
  std::vector<unsigned long long> dev(num_args, 0);
  std::vector<int> temporary;  // per-call buffers: X, bias, residual, Y
  bool ok = true;
  int y_index = -1;
  for (int i = 0; i < num_args && ok; ++i) {
    const std::string& name = launch_.abi[i];
    const bool per_call = name == "X" || name == "bias" || name == "residual" || name == "Y";
    if (name == "Y") y_index = i;
    if (!per_call) {  // packed weights: uploaded once
      auto it = constants_.find(i);
      if (it != constants_.end() && it->second.first == args[i]->data) {
        dev[i] = it->second.second;
        continue;
      }
    }
    const size_t bytes = Bytes(args[i]);
    ok = module_->Check(api.cuMemAlloc(&dev[i], bytes ? bytes : 4), "cuMemAlloc", err);
    if (ok && name != "Y" && bytes)
      ok = module_->Check(api.cuMemcpyHtoD(dev[i], args[i]->data, bytes), "cuMemcpyHtoD", err);
    if (!ok) break;
    if (per_call) {
      temporary.push_back(i);
    } else {
      auto it = constants_.find(i);
      if (it != constants_.end()) api.cuMemFree(it->second.second);
      constants_[i] = {args[i]->data, dev[i]};
    }
  }
  std::vector<unsigned long long> values;
  long long m_value = m;
  std::vector<void*> params;
  values.reserve(launch_.params.size());
  for (const std::string& p : launch_.params) {
    if (!ok) break;
    if (p == "M") {
      params.push_back(&m_value);
      continue;
    }
    int idx = -1;
    for (size_t j = 0; j < launch_.abi.size(); ++j)
      if (launch_.abi[j] == p) idx = static_cast<int>(j);
    if (idx < 0) {
      *err = "launch parameter '" + p + "' is not a kernel argument";
      ok = false;
      break;
    }
    values.push_back(dev[idx]);
    params.push_back(&values.back());
  }
  const long long grid_x = (m + launch_.rows_per_block - 1) / launch_.rows_per_block;  // M on grid.x
  if (ok && grid_x > 2147483647LL) {
    *err = "too many rows for one launch: M=" + std::to_string(m);
    ok = false;
  }
  if (ok && m > 0) {
    const int launched = api.cuLaunchKernel(fn_, static_cast<unsigned>(grid_x), launch_.grid_y, 1, launch_.block[0],
                                            launch_.block[1], launch_.block[2], 0, nullptr, params.data(), nullptr);
    ok = module_->Check(launched, "cuLaunchKernel", err) &&
         module_->Check(api.cuCtxSynchronize(), "running the kernel (cuCtxSynchronize)", err);
  }
  if (ok && y_index >= 0 && Bytes(args[y_index]))
    ok = module_->Check(api.cuMemcpyDtoH(args[y_index]->data, dev[y_index], Bytes(args[y_index])), "cuMemcpyDtoH",
                        err);
  for (int i : temporary) api.cuMemFree(dev[i]);
  return ok;
}

}  // namespace sparsec
