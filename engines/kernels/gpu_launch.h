/* Host side of the GPU kernels (gpu_launch.cc): the CUDA driver opened at first use (cuda_abi.h), the device code
 * loaded from a cubin the caller provides (engines/kernels/cuda.py compiles or finds it), launches of each kernel on
 * a stream, and the few device-memory operations the runtime's state pool and the GPU check need. Built by a plain
 * C++ compiler: no CUDA toolkit at build time, and a library that loads on machines without a GPU.
 *
 * Every function returns 0, or -1 with a message in the caller's buffer (err, errlen) naming what failed (the
 * driver call and its error name, or the argument).
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "gpu_conv.h"
#include "gpu_finite.h"
#include "gpu_scan.h"
#include "selective_scan.h" /* COBRA_API */

#ifdef __cplusplus
extern "C" {
#endif

/* The driver is usable: libcuda.so.1 opened, cuInit done, device `device` exists. */
COBRA_API int cobra_gpu_init(int device, char* err, size_t errlen);
/* compute capability of `device` as major * 10 + minor (87: Jetson Orin, 90: H100/H200) */
COBRA_API int cobra_gpu_arch(int device, int* arch, char* err, size_t errlen);
/* The device code to load into each CUDA context at first launch there: a cubin (or PTX) image, copied. */
COBRA_API int cobra_gpu_set_image(const void* image, size_t bytes, char* err, size_t errlen);
/* Make `device`'s primary context (the one ONNX Runtime's CUDA provider uses) current on the calling thread. */
COBRA_API int cobra_gpu_use_device(int device, char* err, size_t errlen);

/* Launches on `stream` (a CUstream / cudaStream_t; NULL: the legacy default stream), asynchronous. half: the
 * activations are float16 (1) or float32 (0). d_state above 64 or d_conv above 9 are refused. */
COBRA_API int cobra_gpu_selective_scan(const ScanParams* p, int half, void* stream, char* err, size_t errlen);
COBRA_API int cobra_gpu_causal_conv(const ConvParams* p, int half, void* stream, char* err, size_t errlen);
/* flags[r] = 1 where row r holds NaN or infinity (flags zeroed here first); synchronous (waits for the stream) */
COBRA_API int cobra_gpu_rows_nonfinite(const FiniteParams* p, void* stream, char* err, size_t errlen);
/* `layers` decode steps' kernels back to back, as a model's step runs them: conv then scan per layer (the GPU check
 * times this sequence, so Python's call overhead is not in the figure) */
COBRA_API int cobra_gpu_run_layers(const ConvParams* convs, const ScanParams* scans, int layers, int half, void* stream,
                                   char* err, size_t errlen);

/* Device memory for the state pool and the GPU check (the current context; synchronous). */
COBRA_API int cobra_gpu_alloc(size_t bytes, uint64_t* ptr, char* err, size_t errlen);
COBRA_API int cobra_gpu_free(uint64_t ptr, char* err, size_t errlen);
/* any direction (unified addressing: host pointers and device pointers alike) */
COBRA_API int cobra_gpu_copy(uint64_t dst, uint64_t src, size_t bytes, char* err, size_t errlen);
COBRA_API int cobra_gpu_zero(uint64_t dst, size_t bytes, char* err, size_t errlen);
COBRA_API int cobra_gpu_synchronize(char* err, size_t errlen);
/* GPU time of what was launched on the default stream between start and stop, in milliseconds (CUDA events) */
COBRA_API int cobra_gpu_timer_start(char* err, size_t errlen);
COBRA_API int cobra_gpu_timer_stop(float* ms, char* err, size_t errlen);

#ifdef __cplusplus
}
#endif
