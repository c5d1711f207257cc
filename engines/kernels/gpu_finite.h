/* Which rows of a state buffer hold NaN or infinity, on the GPU (the runtime checks every stream's state after a
 * frame without copying the state to the host: only one flag per row crosses). Per-thread function for the device
 * and the host (gpu_common.h).
 *
 *   data    [rows, row_len] elements of elem_size bytes (4: float32, 2: float16)
 *   flags   [rows] int32, zeroed by the caller; a thread that finds a non-finite element sets its row's flag to 1
 *           (threads race only to store the same value)
 *
 * Grid (ceil(row_len / (FINITE_THREADS * FINITE_ITEMS)), rows); each thread reads FINITE_ITEMS elements strided by
 * the block, so a warp's loads are contiguous. Non-finite = exponent bits all ones, read from the bits (no float
 * comparison that a fast-math flag could fold away).
 */
#pragma once
#include "gpu_common.h"

enum { FINITE_THREADS = 256, FINITE_ITEMS = 8 };

struct FiniteParams {
  cobra_i64 rows, row_len, elem_size;
  const void* data;
  int* flags;
};

COBRA_HD CobraLaunch finite_launch(const FiniteParams& p) {
  CobraLaunch g;
  g.grid_x = p.row_len > 0 ? cobra_ceil_div(p.row_len, FINITE_THREADS * FINITE_ITEMS) : 1;
  g.grid_y = p.rows;
  g.grid_z = 1;
  g.threads = FINITE_THREADS;
  return g;
}

COBRA_HD void finite_thread(const FiniteParams& p, cobra_i64 block, cobra_i64 row, int tid) {
  const cobra_i64 start = block * FINITE_THREADS * FINITE_ITEMS + tid;
  bool bad = false;
  for (int i = 0; i < FINITE_ITEMS; i++) {
    const cobra_i64 e = start + (cobra_i64)i * FINITE_THREADS;
    if (e >= p.row_len) break;
    const cobra_i64 at = row * p.row_len + e;
    if (p.elem_size == 2) {
      const cobra_u16 bits = ((const cobra_u16*)p.data)[at];
      bad = bad || (bits & 0x7c00u) == 0x7c00u;
    } else {
      const cobra_u32 bits = ((const cobra_u32*)p.data)[at];
      bad = bad || (bits & 0x7f800000u) == 0x7f800000u;
    }
  }
  if (bad) p.flags[row] = 1;
}
