/* The provider-specific half of the ONNX Runtime ops (ort_op.cc validates inputs and shapes, allocates outputs and
 * fills the argument structs; these run them). Two implementations, one per library:
 *
 *   ort_cpu.cc    CPUExecutionProvider: the fused CPU kernels, tasks spread over the session's intra-op threads
 *                 (_cobra_kernels)
 *   ort_cuda.cc   CUDAExecutionProvider: the GPU kernels launched on the session's compute stream (_cobra_cuda)
 *
 * Each returns an ONNX Runtime status of its own calls, or nullptr with err[0] != 0 for an error of its own (which
 * ort_op.cc reports with the node's name), or nullptr and an empty err on success. Tensor pointers are on the
 * provider's device.
 */
#pragma once
#include <stddef.h>

#include "conv_step.h"
#include "ort_abi.h"
#include "selective_scan.h"

extern const char* const kCobraOrtProvider; /* "CPUExecutionProvider" or "CUDAExecutionProvider" */

OrtStatus* cobra_run_scan(const OrtApi* api, OrtKernelContext* ctx, const CobraScanArgs* a, char* err, size_t errlen);
OrtStatus* cobra_run_conv_step(const OrtApi* api, OrtKernelContext* ctx, const CobraConvStepArgs* a, char* err,
                               size_t errlen);
OrtStatus* cobra_run_causal_conv(const OrtApi* api, OrtKernelContext* ctx, const CobraCausalConvArgs* a, char* err,
                                 size_t errlen);
