/* Mamba-1's selective scan as one fused CPU kernel: mamba_ssm's selective_scan_fn(u, delta, A, B, C, D, z,
 * delta_bias, delta_softplus=True) continuing from a state and returning the last one.
 *
 * Symbols (the paper's, as in export/scan.py):
 *   b   batch (streams)       l   tokens         d   d_inner (channels)       n   d_state
 *
 *   x, dt, z    [b, l, d]   scan input (after conv + SiLU), raw step (dt_proj without its bias), gate
 *   A           [d, n]      -exp(A_log)
 *   B, C        [b, l, n]   input / output projections
 *   D, dt_bias  [d]         skip weight, dt_proj's bias
 *   h0, h_out   [b, d, n]   SSM state before / after the l tokens
 *   y           [b, l, d]   output
 *
 *   delta_t = softplus(dt_t + dt_bias)
 *   h_t     = exp(delta_t * A) * h_{t-1} + delta_t * x_t * B_t        (per channel, per state)
 *   y_t     = (C_t . h_t + D * x_t) * silu(z_t)
 *
 * Work is split into tasks of up to 64 channels of one batch row: a task walks the l tokens once with its
 * channels' state in L1 (64 channels x 16 states x 4 bytes = 4 KB), eight channels per vector.
 */
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* exported from the shared library (it is built with hidden visibility): ONNX Runtime calls RegisterCustomOps,
 * tests and tools call these through ctypes */
#define COBRA_API __attribute__((visibility("default")))

typedef struct CobraScanArgs {
  int64_t b, l, d, n;
  const float *x, *dt, *A, *B, *C, *D, *z, *dt_bias, *h0;
  float *y, *h_out;
} CobraScanArgs;

enum { COBRA_SCAN_MAX_STATE = 64 }; /* n above this is refused (Mamba-1 models use 16) */

/* number of independent tasks for these shapes (b * ceil(d / 64)) */
COBRA_API int64_t cobra_selective_scan_tasks(const CobraScanArgs* a);
/* run one task; tasks may run concurrently (they write disjoint parts of y and h_out) */
COBRA_API void cobra_selective_scan_task(const CobraScanArgs* a, int64_t task);
/* all tasks on the calling thread; returns 0, or -1 if n is above COBRA_SCAN_MAX_STATE */
COBRA_API int cobra_selective_scan(const CobraScanArgs* a);
/* the instruction set the kernel runs with on this CPU: "avx2+fma" or "baseline" ($COBRA_EDGE_KERNEL_ISA=baseline
 * forces the latter) */
COBRA_API const char* cobra_kernel_isa(void);

#ifdef __cplusplus
}
#endif
