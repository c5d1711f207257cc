/* The selective scan's recurrence for training: forward and backward on the CPU, one pass over the tokens per
 * group of channels with the state in L1, for export/train_scan.py's autograd function (PyTorch runs the rest of
 * the selective scan: softplus, the skip D x and the gate, elementwise on [b, l, d]).
 *
 * Symbols as in selective_scan.h; delta is the step after its bias and softplus:
 *   x, delta    [b, l, d]       A  [d, n]       B, C  [b, l, n]       h0, h_out  [b, d, n]
 *
 *   h_t = exp(delta_t * A) * h_{t-1} + delta_t * x_t * B_t          y_t = C_t . h_t      (y [b, l, d])
 *
 * The backward takes gy = dL/dy [b, l, d] and gh = dL/dh_out [b, d, n] (NULL: zero) and writes
 *   gx, gdelta [b, l, d]     gB, gC [b, l, n]     gh0 [b, d, n]     gA [d, n] (accumulated: the caller zeroes it)
 * It recomputes the forward states of each group of channels into a buffer of l x 64 x n floats (mamba_ssm's
 * backward also recomputes rather than storing [b, l, d, n]), then walks the tokens backwards:
 *   g   = dL/dh_t (g starts as gh) + gy_t * C_t
 *   gC_t  += sum_d gy_t * h_t                 gB_t  += sum_d g * delta_t * x_t
 *   gx_t   = sum_n g * delta_t * B_t          gA    += g * h_{t-1} * dA_t * delta_t
 *   gdelta_t = sum_n g * (h_{t-1} * dA_t * A + x_t * B_t)              g <- g * dA_t  (= dL/dh_{t-1})
 * Both run on the calling thread, rows one after the other (gA is summed over rows without locks).
 */
#pragma once
#include <stdint.h>

#include "selective_scan.h" /* COBRA_API, COBRA_SCAN_MAX_STATE */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CobraScanGradArgs {
  int64_t b, l, d, n;
  const float *x, *delta, *A, *B, *C, *h0; /* forward inputs */
  const float *gy, *gh;                    /* backward inputs (gh may be NULL) */
  float *y, *h_out;                        /* forward outputs */
  float *gx, *gdelta, *gA, *gB, *gC, *gh0; /* backward outputs */
} CobraScanGradArgs;

/* y and h_out; returns 0, or -1 if n is outside 1..COBRA_SCAN_MAX_STATE */
COBRA_API int cobra_scan_recurrence(const CobraScanGradArgs* a);
/* gx, gdelta, gB, gC, gh0 written, gA accumulated; returns 0, -1 (n outside the range) or -2 (no memory for the
 * recomputed states) */
COBRA_API int cobra_scan_recurrence_grad(const CobraScanGradArgs* a);

#ifdef __cplusplus
}
#endif
