/* The ONNX Runtime ops on the CPU provider (ort_run.h): the fused CPU kernels, their tasks spread over the session's
 * intra-op thread pool (KernelContext_ParallelFor). */
#include "ort_run.h"

const char* const kCobraOrtProvider = "CPUExecutionProvider";

namespace {

void run_scan_task(void* args, size_t task) { cobra_selective_scan_task((const CobraScanArgs*)args, (int64_t)task); }
void run_conv_row(void* args, size_t row) { cobra_conv_step_row((const CobraConvStepArgs*)args, (int64_t)row); }
void run_causal_conv_task(void* args, size_t task) {
  cobra_causal_conv_task((const CobraCausalConvArgs*)args, (int64_t)task);
}

}  // namespace

OrtStatus* cobra_run_scan(const OrtApi* api, OrtKernelContext* ctx, const CobraScanArgs* a, char*, size_t) {
  const int64_t tasks = cobra_selective_scan_tasks(a);
  if (tasks == 0) return nullptr;
  return ORT_FN(api, KernelContext_ParallelFor)(ctx, run_scan_task, (size_t)tasks, 0, const_cast<CobraScanArgs*>(a));
}

OrtStatus* cobra_run_conv_step(const OrtApi* api, OrtKernelContext* ctx, const CobraConvStepArgs* a, char*, size_t) {
  if (a->b == 1) { /* a few microseconds of work: not worth waking the thread pool */
    cobra_conv_step_row(a, 0);
    return nullptr;
  }
  return a->b ? ORT_FN(api, KernelContext_ParallelFor)(ctx, run_conv_row, (size_t)a->b, 0,
                                                       const_cast<CobraConvStepArgs*>(a))
              : nullptr;
}

OrtStatus* cobra_run_causal_conv(const OrtApi* api, OrtKernelContext* ctx, const CobraCausalConvArgs* a, char*,
                                 size_t) {
  const int64_t tasks = cobra_causal_conv_tasks(a);
  if (tasks == 1 || a->b * a->l * a->d < 16384) { /* one block, or a few microseconds of work: no thread pool wake-up */
    for (int64_t t = 0; t < tasks; t++) cobra_causal_conv_task(a, t);
    return nullptr;
  }
  return tasks ? ORT_FN(api, KernelContext_ParallelFor)(ctx, run_causal_conv_task, (size_t)tasks, 0,
                                                        const_cast<CobraCausalConvArgs*>(a))
               : nullptr;
}
