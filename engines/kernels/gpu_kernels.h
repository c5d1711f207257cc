/* The GPU kernels' entry points (gpu_kernels.cu), by name: the host launch code (gpu_launch.cc) looks them up in the
 * loaded module with these names, and picks one by activation type and register bound.
 *
 *   cobra_scan_<t>_n<N>     selective scan, t = f32 | f16, N = 8 | 16 | 32 | 64 (scan_state_bound)   gpu_scan.h
 *   cobra_conv_<t>_k<K>     causal conv, K = 3 (d_conv 4) | any (d_conv 1..9)                        gpu_conv.h
 *   cobra_finite            rows of a state buffer holding NaN or infinity                           gpu_finite.h
 */
#pragma once

#define COBRA_SCAN_KERNELS(X) X(f32, float, 8) X(f32, float, 16) X(f32, float, 32) X(f32, float, 64) \
  X(f16, cobra_half, 8) X(f16, cobra_half, 16) X(f16, cobra_half, 32) X(f16, cobra_half, 64)
#define COBRA_CONV_KERNELS(X) X(f32, float, 3, 3) X(f32, float, any, 0) X(f16, cobra_half, 3, 3) \
  X(f16, cobra_half, any, 0)
