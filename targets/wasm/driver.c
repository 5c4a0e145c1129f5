/* sparsec's wasm driver: the few runtime pieces TVM-generated kernel objects need, with no TVM runtime.
 *
 * Linked by emcc (targets/wasm/link.py) with the kernels object into kernels.wasm; the JS runner
 * (js/sparsec.mjs) calls it. The kernels are TVM-FFI packed functions `__tvm_ffi_<symbol>(self, args, nargs, ret)`
 * whose arguments are DLTensor pointers. JS describes each argument as 8 int32s
 *   {data pointer, ndim, dtype code, dtype bits, dim0, dim1, dim2, dim3}
 * and `sc_pack` turns that into the TVMFFIAny array the kernel takes. Single-threaded: a T.parallel loop runs as
 * one task. Errors the kernel raises (shape / dtype checks) are kept as text for `sc_last_error`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <tvm/ffi/c_api.h>

#define SC_MAX_ARGS 16
#define SC_MAX_DIMS 4
#define SC_DESC_INTS 8

typedef struct { void* sync_handle; int32_t num_task; } ParallelEnv;
typedef int (*ParallelLambda)(int task_id, ParallelEnv* env, void* cdata);

static int serial_launch(ParallelLambda f, void* cdata, int num_task) {
  ParallelEnv env = {NULL, 1};
  (void)num_task;
  return f(0, &env, cdata);
}

static void* workspace_alloc(int device_type, int device_id, uint64_t nbytes, int code, int bits) {
  (void)device_type; (void)device_id; (void)code; (void)bits;
  return aligned_alloc(64, (size_t)((nbytes + 63) / 64 * 64));
}

static int workspace_free(int device_type, int device_id, void* ptr) {
  (void)device_type; (void)device_id;
  free(ptr);
  return 0;
}

/* The kernel objects hold weak function-pointer slots with these names; these definitions fill them. */
void* __TVMBackendParallelLaunch = (void*)serial_launch;
void* __TVMBackendAllocWorkspace = (void*)workspace_alloc;
void* __TVMBackendFreeWorkspace = (void*)workspace_free;

static char last_error[1024];

void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int32_t n) {
  size_t used = 0;
  const char* pieces[2] = {kind, ": "};
  for (int i = 0; i < 2 + n; ++i) {
    const char* s = i < 2 ? pieces[i] : parts[i - 2];
    if (s == NULL) continue;
    size_t len = strlen(s);
    if (used + len >= sizeof last_error) len = sizeof last_error - 1 - used;
    memcpy(last_error + used, s, len);
    used += len;
  }
  last_error[used] = '\0';
}

static DLTensor tensors[SC_MAX_ARGS];
static int64_t shapes[SC_MAX_ARGS][SC_MAX_DIMS];
static TVMFFIAny args[SC_MAX_ARGS];
static TVMFFIAny result;

void* sc_alloc(uint32_t nbytes) { return aligned_alloc(64, (nbytes + 63) / 64 * 64); }

void sc_free(void* ptr) { free(ptr); }

const char* sc_last_error(void) { return last_error; }

TVMFFIAny* sc_result(void) { return &result; }

/* The TVMFFIAny argument array for `nargs` arguments described by `desc` (8 int32 each); NULL when malformed. */
TVMFFIAny* sc_pack(int32_t nargs, const int32_t* desc) {
  last_error[0] = '\0';
  if (nargs < 1 || nargs > SC_MAX_ARGS) return NULL;
  for (int i = 0; i < nargs; ++i) {
    const int32_t* d = desc + i * SC_DESC_INTS;
    if (d[1] < 1 || d[1] > SC_MAX_DIMS) return NULL;
    DLTensor* t = &tensors[i];
    memset(t, 0, sizeof *t);
    t->data = (void*)(uintptr_t)(uint32_t)d[0];
    t->device.device_type = kDLCPU;
    t->ndim = d[1];
    t->dtype.code = (uint8_t)d[2];
    t->dtype.bits = (uint8_t)d[3];
    t->dtype.lanes = 1;
    for (int k = 0; k < d[1]; ++k) shapes[i][k] = d[4 + k];
    t->shape = shapes[i];
    memset(&args[i], 0, sizeof args[i]);
    args[i].type_index = kTVMFFIDLTensorPtr;
    args[i].v_ptr = t;
  }
  memset(&result, 0, sizeof result);
  result.type_index = kTVMFFINone;
  return args;
}
