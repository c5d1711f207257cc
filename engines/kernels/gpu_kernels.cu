/* The GPU kernels (compiled by NVRTC, engines/kernels/nvrtc.py, or by nvcc): thin __global__ wrappers that call the
 * per-thread functions of gpu_scan.h, gpu_conv.h and gpu_finite.h in the order the host harness (gpu_emu.cc) calls
 * them. Names and instantiations: gpu_kernels.h. Host code launches them through the CUDA driver API
 * (gpu_launch.cc), with the kernel's parameter struct passed by value. */
#include "gpu_conv.h"
#include "gpu_finite.h"
#include "gpu_kernels.h"
#include "gpu_scan.h"

template <typename T, int N>
__device__ __forceinline__ void scan_kernel(const ScanParams& p) {
  __shared__ ScanShared<N> shared;
  ScanThread<T, N> th;
  th.begin(p, blockIdx.x, blockIdx.y, threadIdx.x);
  const cobra_i64 chunks = scan_chunks(p);
  for (cobra_i64 chunk = 0; chunk < chunks; chunk++) {
    scan_stage<T, N>(p, shared, blockIdx.x, blockIdx.y, threadIdx.x, chunk);
    __syncthreads();
    th.tokens(p, shared, threadIdx.x, chunk);
    __syncthreads();
  }
  th.end(p);
}

#define COBRA_SCAN_ENTRY(TN, T, N)                                                                  \
  extern "C" __global__ void __launch_bounds__(SCAN_THREADS) cobra_scan_##TN##_n##N(ScanParams p) { \
    scan_kernel<T, N>(p);                                                                           \
  }
COBRA_SCAN_KERNELS(COBRA_SCAN_ENTRY)

#define COBRA_CONV_ENTRY(TN, T, KN, K)                                                              \
  extern "C" __global__ void __launch_bounds__(CONV_THREADS) cobra_conv_##TN##_k##KN(ConvParams p) { \
    conv_thread<T, K>(p, blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x);                           \
  }
COBRA_CONV_KERNELS(COBRA_CONV_ENTRY)

extern "C" __global__ void __launch_bounds__(FINITE_THREADS) cobra_finite(FiniteParams p) {
  finite_thread(p, blockIdx.x, blockIdx.y, threadIdx.x);
}
