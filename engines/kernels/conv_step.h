/* The decode step's causal depthwise convolution as one kernel (mamba_ssm's causal_conv1d_update with SiLU):
 *
 *   b   batch (streams)      d   d_inner (channels)      k   d_conv (the conv keeps k - 1 past inputs)
 *
 *   x           [b, d]         this token's input column (in_proj's x half)
 *   state       [b, d, k - 1]  the previous k - 1 inputs, oldest first
 *   weight      [d, k]         depthwise kernel (conv1d.weight without its middle axis)
 *   bias        [d]
 *   y           [b, d]         silu(sum_j window_j * weight_j + bias), window = [state, x]
 *   state_out   [b, d, k - 1]  window without its oldest column
 */
#pragma once
#include <stdint.h>

#include "selective_scan.h" /* COBRA_API */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CobraConvStepArgs {
  int64_t b, d, k;
  const float *x, *state, *weight, *bias;
  float *y, *state_out;
} CobraConvStepArgs;

/* batch row ``row`` (rows may run concurrently) */
COBRA_API void cobra_conv_step_row(const CobraConvStepArgs* a, int64_t row);

#ifdef __cplusplus
}
#endif
