/* The fused selective scan (contract in selective_scan.h; body in scan_impl.h). Reference it is tested against:
 * export/scan.py's selective_scan, in tests/engines/test_kernels.py.
 *
 * One build serves every CPU of an architecture: on x86-64 the body is compiled twice (per_isa.h), once for
 * AVX2 + FMA and once for the baseline (SSE2), and the first call picks by what the CPU reports. On aarch64 NEON is
 * the baseline and one body is compiled. */
#include "selective_scan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "isa.h"

#if defined(__x86_64__)
#include <xmmintrin.h> /* MXCSR: flush denormals to zero inside the kernel */
#define COBRA_X86 1
#endif

#define COBRA_IMPL "scan_impl.h"
#include "per_isa.h"

extern "C" int cobra_use_avx2(void) {
  /* 0 undecided, 1 baseline, 2 avx2; threads racing here all store the same value (no function-local static
   * object: its guard would need the C++ runtime, which this library does not link) */
  static int decided = 0;
  int v = __atomic_load_n(&decided, __ATOMIC_ACQUIRE);
  if (!v) {
    const char* force = getenv("COBRA_EDGE_KERNEL_ISA");
    bool avx2 = false;
#if COBRA_AVX2
    avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    v = avx2 && !(force && strcmp(force, "baseline") == 0) ? 2 : 1;
    __atomic_store_n(&decided, v, __ATOMIC_RELEASE);
  }
  return v == 2;
}

namespace {

typedef void (*TaskFn)(const CobraScanArgs*, int64_t, int64_t, int64_t);

TaskFn pick() {
#if COBRA_AVX2
  if (cobra_use_avx2()) return avx2::run_task;
#endif
  return generic::run_task;
}

const int64_t kChannels = (int64_t)generic::kBlocks * generic::VW;

}  // namespace

extern "C" const char* cobra_kernel_isa(void) { return cobra_use_avx2() ? "avx2+fma" : "baseline"; }

extern "C" int64_t cobra_selective_scan_tasks(const CobraScanArgs* a) {
  return a->b * ((a->d + kChannels - 1) / kChannels);
}

extern "C" void cobra_selective_scan_task(const CobraScanArgs* a, int64_t task) {
  const TaskFn run = pick();
  const int64_t groups = (a->d + kChannels - 1) / kChannels;
  const int64_t bi = task / groups, c0 = (task % groups) * kChannels;
#if COBRA_X86
  const unsigned csr = _mm_getcsr();
  _mm_setcsr(csr | 0x8040); /* flush-to-zero and denormals-are-zero for this task, restored after */
#endif
  run(a, bi, c0, a->d - c0 < kChannels ? a->d - c0 : kChannels);
#if COBRA_X86
  _mm_setcsr(csr);
#endif
}

extern "C" int cobra_selective_scan(const CobraScanArgs* a) {
  if (a->n < 1 || a->n > COBRA_SCAN_MAX_STATE) return -1;
  const int64_t tasks = cobra_selective_scan_tasks(a);
  for (int64_t t = 0; t < tasks; t++) cobra_selective_scan_task(a, t);
  return 0;
}
