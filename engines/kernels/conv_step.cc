/* The causal convolutions: the decode step's (ConvStep) and the prefill's over l tokens (CausalConv); contracts in
 * conv_step.h. Reference: export/mamba.py's
 * causal_conv_step, in tests/engines/test_kernels.py. A few multiply-adds per channel: what it saves is the six
 * ONNX operators per layer (concat, slice, multiply, reduce, add, SiLU) that ONNX Runtime dispatches one by one.
 * Body in conv_impl.h, compiled per instruction set like the scan's: the baseline (SSE2) build of its eight-lane
 * SiLU is ~4x slower per row than the AVX2 one (15.6 vs 4.1 us for d_inner 1536). */
#include "conv_step.h"

#include <stdint.h>
#include <string.h>

#include "isa.h"

#define COBRA_IMPL "conv_impl.h"
#include "per_isa.h"

extern "C" void cobra_conv_step_row(const CobraConvStepArgs* a, int64_t row) {
#if COBRA_AVX2
  if (cobra_use_avx2()) {
    avx2::conv_step_row(a, row);
    return;
  }
#endif
  generic::conv_step_row(a, row);
}

extern "C" int64_t cobra_causal_conv_tasks(const CobraCausalConvArgs* a) {
  return a->b * ((a->d + COBRA_CONV_BLOCK - 1) / COBRA_CONV_BLOCK);
}

extern "C" void cobra_causal_conv_task(const CobraCausalConvArgs* a, int64_t task) {
#if COBRA_AVX2
  if (cobra_use_avx2()) {
    avx2::causal_conv_task(a, task);
    return;
  }
#endif
  generic::causal_conv_task(a, task);
}
