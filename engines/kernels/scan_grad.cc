/* The training recurrence's forward and backward (contract in scan_grad.h; bodies in scan_grad_impl.h), compiled
 * per instruction set like the selective scan (per_isa.h). Reference they are tested against: export/scan.py's
 * scan_ref under autograd, in tests/export/test_train_scan.py. */
#include "scan_grad.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "isa.h"

#if defined(__x86_64__)
#include <xmmintrin.h>
#define COBRA_X86 1
#endif

#define COBRA_IMPL "scan_grad_impl.h"
#include "per_isa.h"

namespace {

typedef int (*Fn)(const CobraScanGradArgs*);

int run(const CobraScanGradArgs* a, Fn avx2_fn, Fn generic_fn) {
  if (a->n < 1 || a->n > COBRA_SCAN_MAX_STATE) return -1;
  if (a->b <= 0 || a->l <= 0 || a->d <= 0) return 0;
#if COBRA_X86
  const unsigned csr = _mm_getcsr();
  _mm_setcsr(csr | 0x8040); /* flush-to-zero and denormals-are-zero, restored after */
#endif
  Fn fn = generic_fn;
#if COBRA_AVX2
  if (cobra_use_avx2()) fn = avx2_fn;
#else
  (void)avx2_fn;
#endif
  const int rc = fn(a);
#if COBRA_X86
  _mm_setcsr(csr);
#endif
  return rc;
}

}  // namespace

#if COBRA_AVX2
#define AVX2_OR_NULL(f) avx2::f
#else
#define AVX2_OR_NULL(f) nullptr
#endif

extern "C" int cobra_scan_recurrence(const CobraScanGradArgs* a) {
  return run(a, AVX2_OR_NULL(recurrence), generic::recurrence);
}

extern "C" int cobra_scan_recurrence_grad(const CobraScanGradArgs* a) {
  return run(a, AVX2_OR_NULL(recurrence_grad), generic::recurrence_grad);
}
