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

/* The prefill's conv (contract in conv_step.h): channels [c0, c1) of batch row ``row`` over all l tokens, VW
 * channels per vector, each vector's window (the last k - 1 inputs) in registers. KEEP as in conv_row. */
template <int KEEP>
static void causal_conv_block(const CobraCausalConvArgs* a, int64_t row, int64_t c0, int64_t c1) {
  enum { MAX_KEEP = 8 };
  const int64_t d = a->d, l = a->l, keep = KEEP > 0 ? KEEP : a->k - 1, k = keep + 1;
  const float* x = a->x + row * l * d;
  float* y = a->y + row * l * d;
  const float* state = a->state + row * d * keep;
  float* state_out = a->state_out + row * d * keep;
  for (int64_t c = c0; c < c1; c += VW) {
    const int cnt = c1 - c < VW ? (int)(c1 - c) : VW;
    vf w[MAX_KEEP + 1], win[MAX_KEEP];
    for (int64_t j = 0; j <= keep; j++) { /* weight [d, k] -> lanes over channels */
      vf v = vsplat(0.0f);
      for (int i = 0; i < cnt; i++) v[i] = a->weight[(c + i) * k + j];
      w[j] = v;
    }
    for (int64_t j = 0; j < keep; j++) {
      vf v = vsplat(0.0f);
      for (int i = 0; i < cnt; i++) v[i] = state[(c + i) * keep + j];
      win[j] = v;
    }
    const vf bias = vload_part(a->bias + c, cnt);
    for (int64_t t = 0; t < l; t++) {
      const vf xt = cnt == VW ? vload(x + t * d + c) : vload_part(x + t * d + c, cnt);
      vf acc = bias + xt * w[keep];
      for (int64_t j = 0; j < keep; j++) acc += win[j] * w[j];
      for (int64_t j = 0; j + 1 < keep; j++) win[j] = win[j + 1];
      if (keep > 0) win[keep - 1] = xt;
      const vf out = vsilu(acc);
      if (cnt == VW) vstore(y + t * d + c, out);
      else vstore_part(y + t * d + c, out, cnt);
    }
    for (int64_t j = 0; j < keep; j++)
      for (int i = 0; i < cnt; i++) state_out[(c + i) * keep + j] = win[j][i];
  }
}

/* A chunk of one or two tokens (decoding through the prefill graph): channel by channel as conv_row does, the
 * weights and the state read in their own [d, k] / [d, k - 1] layout instead of gathered into lanes, then the
 * SiLU over each token's row in vectors. */
template <int KEEP>
static void causal_conv_short(const CobraCausalConvArgs* a, int64_t row, int64_t c0, int64_t c1) {
  enum { MAX_KEEP = 8 };
  const int64_t d = a->d, l = a->l, keep = KEEP > 0 ? KEEP : a->k - 1, k = keep + 1;
  const float* x = a->x + row * l * d;
  float* y = a->y + row * l * d;
  const float* state = a->state + row * d * keep;
  float* state_out = a->state_out + row * d * keep;
  for (int64_t c = c0; c < c1; c++) {
    const float* w = a->weight + c * k;
    float win[MAX_KEEP];
    for (int64_t j = 0; j < keep; j++) win[j] = state[c * keep + j];
    for (int64_t t = 0; t < l; t++) {
      const float xt = x[t * d + c];
      float acc = a->bias[c] + xt * w[keep];
      for (int64_t j = 0; j < keep; j++) acc += win[j] * w[j];
      for (int64_t j = 0; j + 1 < keep; j++) win[j] = win[j + 1];
      if (keep > 0) win[keep - 1] = xt;
      y[t * d + c] = acc;
    }
    for (int64_t j = 0; j < keep; j++) state_out[c * keep + j] = win[j];
  }
  for (int64_t t = 0; t < l; t++)
    for (int64_t c = c0; c < c1; c += VW) {
      const int cnt = c1 - c < VW ? (int)(c1 - c) : VW;
      vstore_part(y + t * d + c, vsilu(vload_part(y + t * d + c, cnt)), cnt);
    }
}

static void causal_conv_task(const CobraCausalConvArgs* a, int64_t task) {
  const int64_t blocks = (a->d + COBRA_CONV_BLOCK - 1) / COBRA_CONV_BLOCK;
  const int64_t row = task / blocks, c0 = (task % blocks) * COBRA_CONV_BLOCK;
  const int64_t c1 = c0 + COBRA_CONV_BLOCK < a->d ? c0 + COBRA_CONV_BLOCK : a->d;
  if (a->l <= 2) { /* gathering a window into lanes costs more than a token or two of work */
    if (a->k == 4) causal_conv_short<3>(a, row, c0, c1);
    else causal_conv_short<0>(a, row, c0, c1);
  } else if (a->k == 4) {
    causal_conv_block<3>(a, row, c0, c1);
  } else {
    causal_conv_block<0>(a, row, c0, c1);
  }
}
