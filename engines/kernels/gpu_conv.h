/* The causal depthwise conv on the GPU (cobra_edge.CausalConv, and ConvStep as its l = 1 case: x [b, d] is
 * [b, 1, d] in memory), as a per-thread function for the device and the host (gpu_common.h). Contract as the CPU
 * kernel's (conv_step.h), k = d_conv, keep = k - 1:
 *
 *   x           [b, l, d]       T           state, state_out [b, d, keep]   T (the model's conv-state dtype)
 *   weight      [d, k]          float32     bias [d]                        float32
 *   y           [b, l, d]       T           y_t = silu(window_t . weight + bias), window_t = the k inputs ending at t
 *
 * No recurrence: tokens are independent given their window, so each thread takes one channel and CONV_TOKENS
 * consecutive tokens, reading the keep inputs before its first token (from x, or from the state before token 0)
 * and keeping the window in registers. Grid (ceil(d / CONV_THREADS), max(1, ceil(l / CONV_TOKENS)), b); the thread
 * whose tokens end the sequence also writes state_out (the last keep inputs of [state, x]; for l = 0 the state).
 * KEEP > 0 fixes keep at compile time (3: every Mamba); KEEP = 0 takes keep <= CONV_MAX_KEEP from the arguments.
 */
#pragma once
#include "gpu_common.h"

enum { CONV_THREADS = 64, CONV_TOKENS = 8, CONV_MAX_KEEP = 8 };

struct ConvParams {
  cobra_i64 b, l, d, k;
  const void *x, *state; /* T */
  const float *weight, *bias;
  void *y, *state_out; /* T */
};

COBRA_HD CobraLaunch conv_launch(const ConvParams& p) {
  CobraLaunch g;
  g.grid_x = cobra_ceil_div(p.d, CONV_THREADS);
  g.grid_y = p.l > 0 ? cobra_ceil_div(p.l, CONV_TOKENS) : 1;
  g.grid_z = p.b;
  g.threads = CONV_THREADS;
  return g;
}

template <typename T, int KEEP>
COBRA_HD void conv_thread(const ConvParams& p, cobra_i64 block_c, cobra_i64 chunk, cobra_i64 bi, int tid) {
  enum { W = KEEP > 0 ? KEEP : CONV_MAX_KEEP };
  const cobra_i64 c = block_c * CONV_THREADS + tid;
  if (c >= p.d) return;
  const int keep = KEEP > 0 ? KEEP : (int)(p.k - 1);
  const cobra_i64 l = p.l, d = p.d, t0 = chunk * CONV_TOKENS, t1 = cobra_min64(t0 + CONV_TOKENS, l);
  const T *x = (const T*)p.x, *state = (const T*)p.state;
  const cobra_i64 row = bi * l * d, srow = (bi * d + c) * keep;
  float w[W + 1], win[W];
  COBRA_UNROLL
  for (int j = 0; j < W; j++) {
    const cobra_i64 t = t0 - keep + j; /* the input j places before t0 in the window */
    w[j] = j < keep ? p.weight[c * (keep + 1) + j] : 0.0f;
    win[j] = j >= keep ? 0.0f : t >= 0 ? cobra_load(x, row + t * d + c) : cobra_load(state, srow + keep + t);
  }
  w[W] = p.weight[c * (keep + 1) + keep];
  const float bias = p.bias[c];
  T* y = (T*)p.y;
  for (cobra_i64 t = t0; t < t1; t++) {
    const float xt = cobra_load(x, row + t * d + c);
    float acc = bias + xt * w[W];
    COBRA_UNROLL
    for (int j = 0; j < W; j++)
      if (j < keep) acc += win[j] * w[j];
    COBRA_UNROLL
    for (int j = 0; j + 1 < W; j++)
      if (j + 1 < keep) win[j] = win[j + 1];
    COBRA_UNROLL
    for (int j = 0; j < W; j++)
      if (j == keep - 1) win[j] = xt;
    cobra_store(y, row + t * d + c, cobra_silu(acc));
  }
  if (t1 == l) { /* this thread's tokens end the sequence: the state after it */
    T* out = (T*)p.state_out;
    COBRA_UNROLL
    for (int j = 0; j < W; j++) {
      if (j >= keep) continue;
      const cobra_i64 t = l - keep + j;
      out[srow + j] = t >= 0 ? x[row + t * d + c] : state[srow + keep + t];
    }
  }
}
