/* The conv step's body (contract in conv_step.h). No include guard and no #include on purpose: conv_step.cc
 * includes it once per instruction set (per_isa.h). */
#include "vecmath.h"

/* One row's window: y = window . weight + bias (before SiLU), the window shifted by one into state_out. KEEP > 0
 * fixes the window length at compile time (d_conv = 4 in every Mamba: KEEP = 3), so the channel loop is straight
 * multiply-adds the compiler unrolls; KEEP = 0 reads it from the arguments. */
template <int KEEP>
static void conv_row(const CobraConvStepArgs* a, const float* x, const float* state, float* state_out, float* y) {
  const int64_t d = a->d, keep = KEEP > 0 ? KEEP : a->k - 1, k = keep + 1;
  for (int64_t c = 0; c < d; c++) {
    const float* s = state + c * keep;
    const float* w = a->weight + c * k;
    float* so = state_out + c * keep;
    float acc = a->bias[c] + x[c] * w[keep];
    for (int64_t j = 0; j < keep; j++) acc += s[j] * w[j];
    for (int64_t j = 0; j + 1 < keep; j++) so[j] = s[j + 1];
    if (keep > 0) so[keep - 1] = x[c];
    y[c] = acc;
  }
}

static void conv_step_row(const CobraConvStepArgs* a, int64_t row) {
  const int64_t d = a->d, keep = a->k - 1;
  const float* x = a->x + row * d;
  float* y = a->y + row * d;
  if (keep == 3) conv_row<3>(a, x, a->state + row * d * keep, a->state_out + row * d * keep, y);
  else conv_row<0>(a, x, a->state + row * d * keep, a->state_out + row * d * keep, y);
  for (int64_t c = 0; c < d; c += VW) {
    const int cnt = d - c < VW ? (int)(d - c) : VW;
    vstore_part(y + c, vsilu(vload_part(y + c, cnt)), cnt);
  }
}
