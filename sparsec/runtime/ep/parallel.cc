#include "parallel.h"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>

namespace sparsec {
namespace {

// TVM's C ABI for parallel launches (tvm/runtime/c_backend_api.h), declared here so the EP needs no TVM headers.
struct TvmParallelGroupEnv {
  void* sync_handle;
  int32_t num_task;
};
using TvmParallelLambda = int (*)(int task_id, TvmParallelGroupEnv* penv, void* cdata);
using TvmParallelLaunch = int (*)(TvmParallelLambda flambda, void* cdata, int num_task);

thread_local const OrtKernelContext* tls_ctx = nullptr;
std::atomic<TvmParallelLaunch> g_tvm_launch{nullptr};  // TVM's own launcher: used outside a ParallelScope
std::atomic<int> g_tasks{1};

struct Job {
  TvmParallelLambda fn;
  void* cdata;
  TvmParallelGroupEnv env;
  std::atomic<int> rc{0};
};

void RunTask(void* data, size_t task) {
  Job* job = static_cast<Job*>(data);
  const int rc = job->fn(static_cast<int>(task), &job->env, job->cdata);
  if (rc != 0) job->rc.store(rc);
}

int OrtParallelLaunch(TvmParallelLambda fn, void* cdata, int num_task) {
  const OrtKernelContext* ctx = tls_ctx;
  if (!ctx) return g_tvm_launch.load()(fn, cdata, num_task);
  Job job{fn, cdata, {nullptr, num_task > 0 ? num_task : g_tasks.load()}, {}};
  // The calling thread takes part; the lambda computes its own slice from (task, num_task), so each task index
  // runs exactly once whatever thread picks it up (sparsec's templates use no TVMBackendParallelBarrier).
  OrtStatus* st = g_api->KernelContext_ParallelFor(ctx, RunTask, static_cast<size_t>(job.env.num_task), 0, &job);
  if (st) {
    g_api->ReleaseStatus(st);
    return -1;
  }
  return job.rc.load();
}

}  // namespace

bool RouteParallelLaunch(const std::string& path, int tasks, std::string* err) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (!handle) {
    *err = "kernel library " + path + " is not loaded";
    return false;
  }
  auto* slot = reinterpret_cast<TvmParallelLaunch*>(dlsym(handle, "__TVMBackendParallelLaunch"));
  dlclose(handle);  // drops the reference RTLD_NOLOAD added; the module keeps its own
  if (!slot) return true;  // no parallel loop in this library: nothing to route
  if (!*slot) {
    *err = "kernel library " + path + ": TVM's runtime did not initialise __TVMBackendParallelLaunch";
    return false;
  }
  if (*slot != &OrtParallelLaunch) {
    TvmParallelLaunch expected = nullptr;
    g_tvm_launch.compare_exchange_strong(expected, *slot);  // every library gets the same runtime function
    *slot = &OrtParallelLaunch;
  }
  // Without the option (an app that does not pass it): one task per hardware thread, which ORT's pool spreads
  // over however many threads it has.
  g_tasks.store(tasks > 0 ? tasks : std::max(1, static_cast<int>(std::thread::hardware_concurrency())));
  return true;
}

ParallelScope::ParallelScope(const OrtKernelContext* ctx) : saved_(tls_ctx) { tls_ctx = ctx; }
ParallelScope::~ParallelScope() { tls_ctx = saved_; }

}  // namespace sparsec
