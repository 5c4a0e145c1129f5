/* A qemu-user TCG plugin that counts executed guest instructions and writes the total to a file at exit.
 *
 * Debian's qemu-user is built with plugin support but ships no plugins (no libinsn.so), and no qemu-plugin.h, so
 * the few entry points used here are declared below from the documented plugin API (version 1, QEMU 4.2 .. 8.x).
 * Build: cc -shared -fPIC -O2 insn_count.c -o libinsn_count.so
 * Use:   qemu-aarch64 -plugin ./libinsn_count.so,out=/tmp/count.txt ./prog
 * Counts are exact with one guest thread; callbacks add atomically, so extra threads only add their own work.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t;  /* only passed by pointer */
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void* userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void* userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb* tb);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb* tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void* userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void* userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb* tb);

#define EXPORT __attribute__((visibility("default")))
EXPORT int qemu_plugin_version = 1;

#define MAX_THREADS 64
static uint64_t per_thread[MAX_THREADS];  /* guest threads are qemu-user's vCPUs; the last slot takes the rest */
static char out_path[4096];

static void on_exec(unsigned int vcpu_index, void* n_insns) {
  unsigned int slot = vcpu_index < MAX_THREADS ? vcpu_index : MAX_THREADS - 1;
  __atomic_fetch_add(&per_thread[slot], (uint64_t)(uintptr_t)n_insns, __ATOMIC_RELAXED);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb* tb) {
  (void)id;
  size_t n = qemu_plugin_tb_n_insns(tb);
  qemu_plugin_register_vcpu_tb_exec_cb(tb, on_exec, QEMU_PLUGIN_CB_NO_REGS, (void*)(uintptr_t)n);
}

static void on_exit(qemu_plugin_id_t id, void* userdata) {
  (void)id;
  (void)userdata;
  FILE* f = out_path[0] ? fopen(out_path, "w") : stderr;
  if (!f) return;
  /* first line: the total; then one line per guest thread that ran: "<thread> <instructions>" */
  uint64_t total = 0;
  for (int i = 0; i < MAX_THREADS; ++i) total += __atomic_load_n(&per_thread[i], __ATOMIC_RELAXED);
  fprintf(f, "%llu\n", (unsigned long long)total);
  for (int i = 0; i < MAX_THREADS; ++i) {
    uint64_t n = __atomic_load_n(&per_thread[i], __ATOMIC_RELAXED);
    if (n) fprintf(f, "%d %llu\n", i, (unsigned long long)n);
  }
  if (f != stderr) fclose(f);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t* info, int argc, char** argv) {
  (void)info;
  for (int i = 0; i < argc; ++i) {
    if (strncmp(argv[i], "out=", 4) == 0) {
      strncpy(out_path, argv[i] + 4, sizeof(out_path) - 1);
    }
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_atexit_cb(id, on_exit, NULL);
  return 0;
}
