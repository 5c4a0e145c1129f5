/* A stand-in for libcuda.so.1 on machines without a GPU: device memory is host memory, and cuLaunchKernel runs a
 * CPU CSR product Y[m, n] = sum_j values[j] * X[m, indices[j]] over the parameters named in $FAKE_CUDA_PARAMS
 * (comma-separated, as in kernels.launch; "M" is the int64 row count), with N from $FAKE_CUDA_N. Each launch appends
 * "entry gx gy gz bx by bz M" to $FAKE_CUDA_LOG. It checks how the sparsec EP marshals a launch, not a kernel. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned long long CUdeviceptr;

int cuInit(unsigned flags) { return 0; }
int cuDeviceGetCount(int* n) { *n = 1; return 0; }
int cuDeviceGet(int* d, int i) { *d = i; return 0; }
int cuDevicePrimaryCtxRetain(void** ctx, int d) { *ctx = (void*)0x1; return 0; }
int cuCtxSetCurrent(void* ctx) { return 0; }
int cuModuleLoadData(void** m, const void* image) { *m = (void*)0x2; return 0; }
int cuModuleGetFunction(void** f, void* m, const char* name) { *f = strdup(name); return 0; }
int cuMemAlloc_v2(CUdeviceptr* p, size_t n) { *p = (CUdeviceptr)(uintptr_t)calloc(1, n); return *p ? 0 : 2; }
int cuMemFree_v2(CUdeviceptr p) { free((void*)(uintptr_t)p); return 0; }
int cuMemcpyHtoD_v2(CUdeviceptr d, const void* s, size_t n) { memcpy((void*)(uintptr_t)d, s, n); return 0; }
int cuMemcpyDtoH_v2(void* d, CUdeviceptr s, size_t n) { memcpy(d, (void*)(uintptr_t)s, n); return 0; }
int cuCtxSynchronize(void) { return 0; }
int cuGetErrorString(int e, const char** s) { *s = "fake error"; return 0; }

static void* param(void** params, const char* want, int64_t* m_out) {
  char names[512];
  snprintf(names, sizeof names, "%s", getenv("FAKE_CUDA_PARAMS") ? getenv("FAKE_CUDA_PARAMS") : "");
  int i = 0;
  for (char* tok = strtok(names, ","); tok; tok = strtok(NULL, ","), ++i) {
    if (strcmp(tok, "M") == 0 && m_out) *m_out = *(int64_t*)params[i];
    if (want && strcmp(tok, want) == 0) return (void*)(uintptr_t)(*(CUdeviceptr*)params[i]);
  }
  return NULL;
}

int cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned shmem, void* stream, void** params, void** extra) {
  int64_t m = -1;
  param(params, NULL, &m);
  const float* x = param(params, "X", NULL);
  const float* values = param(params, "values", NULL);
  const int32_t* indices = param(params, "indices", NULL);
  const int32_t* indptr = param(params, "indptr", NULL);
  float* y = param(params, "Y", NULL);
  const int n = atoi(getenv("FAKE_CUDA_N") ? getenv("FAKE_CUDA_N") : "0");
  const int k = atoi(getenv("FAKE_CUDA_K") ? getenv("FAKE_CUDA_K") : "0");
  FILE* log = fopen(getenv("FAKE_CUDA_LOG"), "a");
  if (log) {
    fprintf(log, "%s %u %u %u %u %u %u %lld\n", (const char*)f, gx, gy, gz, bx, by, bz, (long long)m);
    fclose(log);
  }
  if (!x || !values || !indices || !indptr || !y || m < 0) return 1;  /* CUDA_ERROR_INVALID_VALUE */
  for (int64_t r = 0; r < m; ++r)
    for (int c = 0; c < n; ++c) {
      float acc = 0.f;
      for (int j = indptr[c]; j < indptr[c + 1]; ++j) acc += values[j] * x[r * k + indices[j]];
      y[r * n + c] = acc;
    }
  return 0;
}
