/* What the GPU kernels' per-thread code needs, written once for two compilers:
 *
 *   - NVRTC or nvcc (__CUDACC__): the code runs on the GPU, one call per thread of the launch;
 *   - a plain C++ compiler: the same functions run on the CPU, called by the host harness (gpu_emu.cc) for every
 *     block and thread index the real launch would use, so the tests prove the code the GPU runs.
 *
 * COBRA_HD marks a function for both (__host__ __device__ under CUDA, plain inline otherwise; COBRA_HDM a member function). Nothing here may
 * include a header: NVRTC compiles without the CUDA toolkit's headers (it has its own math functions built in), so
 * integer types, float16 conversion and the math calls are declared here for both sides.
 *
 * Activations are float32 or float16 ("T" below: float or cobra_half, a float16 held as its 16 bits); the state, A,
 * D, dt_bias, the conv weight and bias, and every computation are float32.
 */
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define COBRA_DEVICE_CODE 1
#define COBRA_HD __host__ __device__ __forceinline__
#define COBRA_HDM __host__ __device__ __forceinline__
typedef long long cobra_i64;
typedef unsigned short cobra_u16;
typedef unsigned int cobra_u32;
#else
#include <math.h>
#include <stdint.h>
#include <string.h>
#define COBRA_HD static inline
#define COBRA_HDM inline
typedef int64_t cobra_i64;
typedef uint16_t cobra_u16;
typedef uint32_t cobra_u32;
#endif

/* a fixed-trip loop over register arrays, fully unrolled (so the arrays stay in registers on the GPU) */
#if COBRA_DEVICE_CODE || defined(__clang__)
#define COBRA_UNROLL _Pragma("unroll")
#else
#define COBRA_UNROLL _Pragma("GCC unroll 64")
#endif

/* a float16 value as its IEEE 754 binary16 bits (what ONNX Runtime and numpy store) */
struct cobra_half {
  cobra_u16 bits;
};

#if COBRA_DEVICE_CODE
__device__ __forceinline__ float cobra_half_to_float(cobra_half h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.bits));
  return f;
}
__device__ __forceinline__ cobra_half cobra_float_to_half(float f) {
  cobra_half h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(f));
  return h;
}
__device__ __forceinline__ float cobra_bits_float(cobra_u32 u) { return __uint_as_float(u); }
__device__ __forceinline__ cobra_u32 cobra_float_bits(float f) { return __float_as_uint(f); }
#else
static inline float cobra_bits_float(cobra_u32 u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
static inline cobra_u32 cobra_float_bits(float f) {
  cobra_u32 u;
  memcpy(&u, &f, sizeof u);
  return u;
}
/* binary16 -> binary32, exact (subnormals, infinities and NaN included) */
static inline float cobra_half_to_float(cobra_half h) {
  const cobra_u32 sign = (cobra_u32)(h.bits & 0x8000u) << 16, exp = (h.bits >> 10) & 0x1fu, man = h.bits & 0x3ffu;
  if (exp == 0x1f) return cobra_bits_float(sign | 0x7f800000u | (man << 13));
  if (exp == 0) { /* zero or subnormal: man * 2^-24 */
    const float v = (float)man * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return cobra_bits_float(sign | ((exp + 112u) << 23) | (man << 13));
}
/* binary32 -> binary16, rounded to nearest even (as cvt.rn.f16.f32 and numpy do); overflow gives infinity */
static inline cobra_half cobra_float_to_half(float f) {
  const cobra_u32 u = cobra_float_bits(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  cobra_half h;
  if (a >= 0x7f800000u) { /* infinity or NaN (quiet) */
    h.bits = (cobra_u16)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
    return h;
  }
  if (a >= 0x477ff000u) { /* rounds to >= 65520: infinity */
    h.bits = (cobra_u16)(sign | 0x7c00u);
    return h;
  }
  if (a < 0x38800000u) { /* below the smallest normal half (2^-14): subnormal, rounded in float arithmetic */
    const float v = cobra_bits_float(a) * 16777216.0f; /* in units of 2^-24 */
    const float r = nearbyintf(v);                     /* the default mode: to nearest even */
    h.bits = (cobra_u16)(sign | (cobra_u32)r);
    return h;
  }
  const cobra_u32 mant = a + 0xc8000fffu + ((a >> 13) & 1u); /* rebias (-112 << 23) and round to nearest even */
  h.bits = (cobra_u16)(sign | (mant >> 13));
  return h;
}
#endif

/* loads and stores of an activation, converting to and from float32 */
COBRA_HD float cobra_load(const float* p, cobra_i64 i) { return p[i]; }
COBRA_HD float cobra_load(const cobra_half* p, cobra_i64 i) { return cobra_half_to_float(p[i]); }
COBRA_HD void cobra_store(float* p, cobra_i64 i, float v) { p[i] = v; }
COBRA_HD void cobra_store(cobra_half* p, cobra_i64 i, float v) { p[i] = cobra_float_to_half(v); }

/* The few transcendental functions, the same formulas as export/scan.py's reference (expf and log1pf are CUDA's
 * full-precision ones on the GPU, libm's on the host). */
COBRA_HD float cobra_softplus(float v) { return fmaxf(v, 0.0f) + log1pf(expf(-fabsf(v))); }
COBRA_HD float cobra_silu(float z) { return z / (1.0f + expf(-z)); }

COBRA_HD cobra_i64 cobra_min64(cobra_i64 a, cobra_i64 b) { return a < b ? a : b; }
COBRA_HD cobra_i64 cobra_ceil_div(cobra_i64 a, cobra_i64 b) { return (a + b - 1) / b; }

/* A launch's shape: grid of blocks (x, y, z) of `threads` threads (x only). The host launch code and the host harness
 * both take it from the *_launch functions of each kernel header, so the harness walks the grid the GPU gets. */
struct CobraLaunch {
  cobra_i64 grid_x, grid_y, grid_z;
  int threads;
};
