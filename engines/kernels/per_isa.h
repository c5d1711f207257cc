/* Compiles the kernel body named by COBRA_IMPL (a header without include guard) once per instruction set:
 * namespace avx2 (AVX2 + FMA, x86-64 with GCC or Clang; COBRA_AVX2 is then 1) and namespace generic (the
 * architecture's baseline: SSE2 on x86-64, NEON on aarch64). cobra_use_avx2() (isa.h) says at run time which one
 * to call. No include guard on purpose: each kernel's .cc includes it once, after defining COBRA_IMPL and
 * including <stdint.h> and <string.h>. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define COBRA_AVX2 1
namespace avx2 {
#include COBRA_IMPL
}
#pragma GCC pop_options
#elif defined(__x86_64__) && defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#define COBRA_AVX2 1
namespace avx2 {
#include COBRA_IMPL
}
#pragma clang attribute pop
#endif

namespace generic {
#include COBRA_IMPL
}
