/* Which body of the kernels runs on this CPU (per_isa.h compiles both). */
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when the CPU has AVX2 and FMA and $COBRA_EDGE_KERNEL_ISA is not "baseline" (tests force the baseline body on
 * AVX2 machines with it); decided on the first call, then cached. Defined in selective_scan.cc. */
int cobra_use_avx2(void);

#ifdef __cplusplus
}
#endif
