/* The host harness: the GPU kernels' per-thread code (gpu_scan.h, gpu_conv.h, gpu_finite.h) run on the CPU over the
 * launch grid the GPU gets (the same *_launch functions as gpu_launch.cc), every block and every thread index, with
 * the block's shared memory emulated: each thread's calls between two barriers run for every thread of the block
 * before any thread passes the barrier, as __syncthreads() guarantees. Shared memory is filled with NaN before each
 * staging phase, so a value some thread should have staged and did not poisons the output instead of passing
 * unnoticed. tests/engines/test_gpu_kernels.py compares the results with the float64 reference.
 *
 * Pointers are host pointers here; the code is the code the GPU runs (gpu_kernels.cu calls the same functions in the
 * same order). What the harness cannot show: timing, and float differences between CUDA's expf/log1pf and libm's
 * (both within a few ulp).
 */
#include <math.h>
#include <stdlib.h>

#include "gpu_launch.h"

extern "C" {
COBRA_API int cobra_emu_selective_scan(const ScanParams* p, int half);
COBRA_API int cobra_emu_causal_conv(const ConvParams* p, int half);
COBRA_API int cobra_emu_rows_nonfinite(const FiniteParams* p);
}

namespace {

template <int N>
void poison(ScanShared<N>* s) {
  float* f = (float*)s;
  for (size_t i = 0; i < sizeof(ScanShared<N>) / sizeof(float); i++) f[i] = NAN;
}

template <typename T, int N>
int scan(const ScanParams& p) {
  const CobraLaunch g = scan_launch(p);
  ScanShared<N>* shared = (ScanShared<N>*)malloc(sizeof(ScanShared<N>));
  ScanThread<T, N>* th = (ScanThread<T, N>*)malloc(sizeof(ScanThread<T, N>) * (size_t)g.threads);
  if (!shared || !th) {
    free(shared);
    free(th);
    return -1;
  }
  for (cobra_i64 by = 0; by < g.grid_y; by++)
    for (cobra_i64 bx = 0; bx < g.grid_x; bx++) {
      for (int t = 0; t < g.threads; t++) th[t].begin(p, bx, by, t);
      for (cobra_i64 chunk = 0; chunk < scan_chunks(p); chunk++) {
        poison(shared);
        for (int t = 0; t < g.threads; t++) scan_stage<T, N>(p, *shared, bx, by, t, chunk);
        /* __syncthreads() */
        for (int t = 0; t < g.threads; t++) th[t].tokens(p, *shared, t, chunk);
        /* __syncthreads() */
      }
      for (int t = 0; t < g.threads; t++) th[t].end(p);
    }
  free(shared);
  free(th);
  return 0;
}

template <typename T>
int scan_n(const ScanParams& p) {
  switch (scan_state_bound(p.n)) {
    case 8: return scan<T, 8>(p);
    case 16: return scan<T, 16>(p);
    case 32: return scan<T, 32>(p);
    case 64: return scan<T, 64>(p);
    default: return -1;
  }
}

template <typename T, int KEEP>
void conv(const ConvParams& p) {
  const CobraLaunch g = conv_launch(p);
  for (cobra_i64 bz = 0; bz < g.grid_z; bz++)
    for (cobra_i64 by = 0; by < g.grid_y; by++)
      for (cobra_i64 bx = 0; bx < g.grid_x; bx++)
        for (int t = 0; t < g.threads; t++) conv_thread<T, KEEP>(p, bx, by, bz, t);
}

}  // namespace

extern "C" int cobra_emu_selective_scan(const ScanParams* p, int half) {
  return half ? scan_n<cobra_half>(*p) : scan_n<float>(*p);
}

extern "C" int cobra_emu_causal_conv(const ConvParams* p, int half) {
  if (p->k < 1 || p->k > CONV_MAX_KEEP + 1) return -1;
  const bool k4 = p->k == 4; /* the same choice as gpu_launch.cc */
  if (half) k4 ? conv<cobra_half, 3>(*p) : conv<cobra_half, 0>(*p);
  else k4 ? conv<float, 3>(*p) : conv<float, 0>(*p);
  return 0;
}

extern "C" int cobra_emu_rows_nonfinite(const FiniteParams* p) {
  if (p->elem_size != 2 && p->elem_size != 4) return -1;
  for (cobra_i64 r = 0; r < p->rows; r++) p->flags[r] = 0;
  const CobraLaunch g = finite_launch(*p);
  for (cobra_i64 by = 0; by < g.grid_y; by++)
    for (cobra_i64 bx = 0; bx < g.grid_x; bx++)
      for (int t = 0; t < g.threads; t++) finite_thread(*p, bx, by, t);
  return 0;
}
