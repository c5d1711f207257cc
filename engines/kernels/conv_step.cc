/* The decode step's causal convolution (contract in conv_step.h). Reference: export/mamba.py's
 * causal_conv_step, in tests/engines/test_kernels.py. A few multiply-adds per channel: what it saves is the six
 * ONNX operators per layer (concat, slice, multiply, reduce, add, SiLU) that ONNX Runtime dispatches one by one. */
#include "conv_step.h"

#include <stdint.h>
#include <string.h>

namespace conv {
#include "vecmath.h"
}

extern "C" void cobra_conv_step_row(const CobraConvStepArgs* a, int64_t row) {
  using namespace conv;
  const int64_t d = a->d, k = a->k, keep = k - 1;
  const float* x = a->x + row * d;
  const float* state = a->state + row * d * keep;
  float* state_out = a->state_out + row * d * keep;
  float* y = a->y + row * d;
  for (int64_t c = 0; c < d; c++) {
    const float* s = state + c * keep;
    const float* w = a->weight + c * k;
    float acc = 0.0f;
    for (int64_t j = 0; j < keep; j++) acc += s[j] * w[j];
    acc += x[c] * w[keep];
    y[c] = acc + a->bias[c];
    float* so = state_out + c * keep;
    for (int64_t j = 0; j + 1 < keep; j++) so[j] = s[j + 1];
    if (keep > 0) so[keep - 1] = x[c];
  }
  for (int64_t c = 0; c < d; c += VW) {
    const int cnt = d - c < VW ? (int)(d - c) : VW;
    vstore_part(y + c, vsilu(vload_part(y + c, cnt)), cnt);
  }
}
