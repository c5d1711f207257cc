/* The selective scan on the GPU (cobra_edge.SelectiveScan, and SelectiveStep as its l = 1 case: the same memory),
 * as per-thread functions that compile for the device and the host (gpu_common.h). Contract and symbols as the CPU
 * kernel's (selective_scan.h):
 *
 *   x, dt, z    [b, l, d]   T (float32 or float16)     A  [d, n]   float32      D, dt_bias [d]  float32
 *   B, C        [b, l, n]   T                         h0, h_out [b, d, n]      float32 (the state, always)
 *   y           [b, l, d]   T
 *
 *   delta_t = softplus(dt_t + dt_bias);  h_t = exp(delta_t A) h_{t-1} + delta_t x_t B_t;  y_t = (C_t . h_t + D x_t) silu(z_t)
 *
 * Launch: one thread per channel, its n states and A row in registers (N, the compile-time bound on n, fixes the
 * register arrays: 8, 16, 32 or 64); a block holds SCAN_THREADS channels of one batch row; grid (ceil(d /
 * SCAN_THREADS), b). The loop over tokens runs inside the kernel, SCAN_CHUNK tokens at a time:
 *
 *   scan_stage    every thread of the block copies a share of the chunk into shared memory: its own channel's x, dt
 *                 and z for the chunk's tokens (coalesced rows: the loads of a chunk are all in flight at once), and
 *                 a stride of the chunk's B and C (SCAN_CHUNK x n values read by every channel);
 *   (barrier)
 *   ScanThread::tokens   each thread runs its channel through the chunk's tokens from shared memory;
 *   (barrier)
 *
 * ScanThread::begin loads the state, ::end stores it. The kernel (gpu_kernels.cu) and the host harness (gpu_emu.cc)
 * call exactly these functions in this order.
 */
#pragma once
#include "gpu_common.h"

enum { SCAN_THREADS = 64, SCAN_CHUNK = 16, SCAN_MAX_STATE = 64 };

/* the kernel's argument, passed by value (the same layout for both compilers: 64-bit integers and pointers) */
struct ScanParams {
  cobra_i64 b, l, d, n;
  const void *x, *dt, *B, *C, *z; /* T */
  const float *A, *D, *dt_bias, *h0;
  void* y; /* T */
  float* h_out;
};

COBRA_HD CobraLaunch scan_launch(const ScanParams& p) {
  CobraLaunch g;
  g.grid_x = cobra_ceil_div(p.d, SCAN_THREADS);
  g.grid_y = p.b;
  g.grid_z = 1;
  g.threads = SCAN_THREADS;
  return g;
}

/* chunks of SCAN_CHUNK tokens: the kernel's loop runs stage, barrier, tokens, barrier for each */
COBRA_HD cobra_i64 scan_chunks(const ScanParams& p) { return cobra_ceil_div(p.l, SCAN_CHUNK); }
COBRA_HD int scan_chunk_count(const ScanParams& p, cobra_i64 chunk) {
  return (int)cobra_min64(SCAN_CHUNK, p.l - chunk * SCAN_CHUNK);
}

/* the smallest register bound N in {8, 16, 32, 64} that holds n (0: n is outside 1..64) */
COBRA_HD int scan_state_bound(cobra_i64 n) { return n < 1 || n > 64 ? 0 : n <= 8 ? 8 : n <= 16 ? 16 : n <= 32 ? 32 : 64; }

/* one block's shared memory: the chunk as float32, token-major */
template <int N>
struct ScanShared {
  float x[SCAN_CHUNK][SCAN_THREADS], dt[SCAN_CHUNK][SCAN_THREADS], z[SCAN_CHUNK][SCAN_THREADS];
  float B[SCAN_CHUNK][N], C[SCAN_CHUNK][N];
};

/* Thread `tid` of block (block_c, bi) stages its share of chunk `chunk` of batch row bi. */
template <typename T, int N>
COBRA_HD void scan_stage(const ScanParams& p, ScanShared<N>& s, cobra_i64 block_c, cobra_i64 bi, int tid,
                         cobra_i64 chunk) {
  const cobra_i64 t0 = chunk * SCAN_CHUNK;
  const int count = scan_chunk_count(p, chunk);
  const cobra_i64 c = block_c * SCAN_THREADS + tid;
  const T *x = (const T*)p.x, *dt = (const T*)p.dt, *z = (const T*)p.z;
  if (c < p.d) {
    for (int i = 0; i < count; i++) {
      const cobra_i64 o = (bi * p.l + t0 + i) * p.d + c;
      s.x[i][tid] = cobra_load(x, o);
      s.dt[i][tid] = cobra_load(dt, o);
      s.z[i][tid] = cobra_load(z, o);
    }
  }
  const T *B = (const T*)p.B, *C = (const T*)p.C;
  const int n = (int)p.n;
  for (int i = tid; i < count * n; i += SCAN_THREADS) {
    const int t = i / n, k = i - t * n;
    const cobra_i64 o = (bi * p.l + t0 + t) * p.n + k;
    s.B[t][k] = cobra_load(B, o);
    s.C[t][k] = cobra_load(C, o);
  }
}

/* One thread's channel: its state and A row in registers from begin() to end(). */
template <typename T, int N>
struct ScanThread {
  float h[N], A[N];
  float D, bias;
  cobra_i64 c, bi;
  bool active; /* c < d: the last block's spare threads stage nothing and compute nothing */

  COBRA_HDM void begin(const ScanParams& p, cobra_i64 block_c, cobra_i64 row, int tid) {
    c = block_c * SCAN_THREADS + tid;
    bi = row;
    active = c < p.d;
    const int n = (int)p.n;
    const float* h0 = p.h0 + (bi * p.d + (active ? c : 0)) * p.n;
    const float* a = p.A + (active ? c : 0) * p.n;
    COBRA_UNROLL
    for (int k = 0; k < N; k++) {
      h[k] = active && k < n ? h0[k] : 0.0f;
      A[k] = active && k < n ? a[k] : 0.0f;
    }
    D = active ? p.D[c] : 0.0f;
    bias = active ? p.dt_bias[c] : 0.0f;
  }

  /* the tokens of chunk `chunk` from shared memory (staged by the whole block); writes y for each */
  COBRA_HDM void tokens(const ScanParams& p, const ScanShared<N>& s, int tid, cobra_i64 chunk) {
    if (!active) return;
    const cobra_i64 t0 = chunk * SCAN_CHUNK;
    const int count = scan_chunk_count(p, chunk);
    const int n = (int)p.n;
    T* y = (T*)p.y;
    for (int i = 0; i < count; i++) {
      const float x = s.x[i][tid];
      const float delta = cobra_softplus(s.dt[i][tid] + bias);
      const float dx = delta * x;
      float acc = 0.0f;
      COBRA_UNROLL
      for (int k = 0; k < N; k++) {
        if (k < n) {
          h[k] = expf(delta * A[k]) * h[k] + dx * s.B[i][k];
          acc += h[k] * s.C[i][k];
        }
      }
      cobra_store(y, (bi * p.l + t0 + i) * p.d + c, (acc + D * x) * cobra_silu(s.z[i][tid]));
    }
  }

  COBRA_HDM void end(const ScanParams& p) {
    if (!active) return;
    float* out = p.h_out + (bi * p.d + c) * p.n;
    const int n = (int)p.n;
    COBRA_UNROLL
    for (int k = 0; k < N; k++)
      if (k < n) out[k] = h[k];
  }
};
