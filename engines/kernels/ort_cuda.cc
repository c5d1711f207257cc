/* The ONNX Runtime ops on the CUDA provider (ort_run.h): the GPU kernels (gpu_launch.h) launched on the session's
 * compute stream (KernelContext_GetGPUComputeStream), so they order with the provider's own kernels and copies and
 * nothing synchronises. ONNX Runtime hands custom ops of this provider device pointers for every input and output.
 * The graphs' cobra_edge nodes are float32 (the fp16 variant casts around them), so these launch the float32
 * kernels; the float16 ones are there for a float16 contract (gpu_check.py runs both). */
#include "gpu_launch.h"
#include "ort_run.h"

const char* const kCobraOrtProvider = "CUDAExecutionProvider";

namespace {

OrtStatus* stream_of(const OrtApi* api, OrtKernelContext* ctx, void** stream) {
  *stream = nullptr;
  return ORT_FN(api, KernelContext_GetGPUComputeStream)(ctx, stream);
}

}  // namespace

OrtStatus* cobra_run_scan(const OrtApi* api, OrtKernelContext* ctx, const CobraScanArgs* a, char* err, size_t errlen) {
  void* stream;
  if (OrtStatus* st = stream_of(api, ctx, &stream)) return st;
  ScanParams p = {a->b, a->l, a->d, a->n, a->x, a->dt, a->B, a->C, a->z, a->A, a->D, a->dt_bias, a->h0, a->y, a->h_out};
  cobra_gpu_selective_scan(&p, 0, stream, err, errlen);
  return nullptr;
}

/* CausalConv over l tokens; ConvStep is the same kernel at l = 1 ([b, d] = [b, 1, d] in memory) */
OrtStatus* cobra_run_causal_conv(const OrtApi* api, OrtKernelContext* ctx, const CobraCausalConvArgs* a, char* err,
                                 size_t errlen) {
  void* stream;
  if (OrtStatus* st = stream_of(api, ctx, &stream)) return st;
  ConvParams p = {a->b, a->l, a->d, a->k, a->x, a->state, a->weight, a->bias, a->y, a->state_out};
  cobra_gpu_causal_conv(&p, 0, stream, err, errlen);
  return nullptr;
}

OrtStatus* cobra_run_conv_step(const OrtApi* api, OrtKernelContext* ctx, const CobraConvStepArgs* a, char* err,
                               size_t errlen) {
  const CobraCausalConvArgs one = {a->b, 1, a->d, a->k, a->x, a->state, a->weight, a->bias, a->y, a->state_out};
  return cobra_run_causal_conv(api, ctx, &one, err, errlen);
}
