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

/* The prefill's conv over l tokens continuing from the state (mamba_ssm's causal_conv1d_fn with an initial state,
 * and SiLU), token-major as in_proj writes it:
 *
 *   x           [b, l, d]      the chunk's inputs (in_proj's x half)
 *   state       [b, d, k - 1]  the k - 1 inputs before the chunk, oldest first
 *   weight, bias                as above
 *   y           [b, l, d]      y_t = silu(sum_j window_t,j * weight_j + bias), window_t = the k inputs ending at t
 *   state_out   [b, d, k - 1]  the last k - 1 inputs of [state, x] (for l < k - 1 partly the old state)
 *
 * Tasks: one batch row and a block of COBRA_CONV_BLOCK channels each, walking the l tokens once with the block's
 * window in registers: at l = 1 (decoding with the prefill graph) as cheap as ConvStep. */
enum { COBRA_CONV_BLOCK = 64 };

typedef struct CobraCausalConvArgs {
  int64_t b, l, d, k;
  const float *x, *state, *weight, *bias;
  float *y, *state_out;
} CobraCausalConvArgs;

COBRA_API int64_t cobra_causal_conv_tasks(const CobraCausalConvArgs* a);
COBRA_API void cobra_causal_conv_task(const CobraCausalConvArgs* a, int64_t task);

#ifdef __cplusplus
}
#endif
