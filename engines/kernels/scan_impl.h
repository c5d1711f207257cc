/* The selective-scan kernel body (contract in selective_scan.h). No include guard and no #include on purpose:
 * selective_scan.cc includes it once per instruction set, inside a namespace compiled for that set. */
#include "vecmath.h"

enum { kBlocks = 8 }; /* vectors of VW channels per task: 64 channels */

/* One task: channels [c0, c0 + channels) of batch row bi, all l tokens, the channels' state in L1.
 * N: d_state at compile time (16, every Mamba-1 model) or 0 for a runtime n <= COBRA_SCAN_MAX_STATE.
 * BLOCKS: kBlocks when the task holds 64 channels (d a multiple of 64: the fast path), 0 for a tail task whose
 * last vector may be partly used. */
template <int N, int BLOCKS>
static void scan_task(const CobraScanArgs* a, int64_t bi, int64_t c0, int64_t channels) {
  const int64_t l = a->l, d = a->d, n = N ? N : a->n;
  const int blocks = BLOCKS ? BLOCKS : (int)((channels + VW - 1) / VW);
  const int last = BLOCKS ? VW : (int)(channels - (int64_t)(blocks - 1) * VW); /* lanes of the last vector */
  vf h[kBlocks][N ? N : COBRA_SCAN_MAX_STATE], At[kBlocks][N ? N : COBRA_SCAN_MAX_STATE];
  vf D[kBlocks], bias[kBlocks];
  const float* h0 = a->h0 + bi * d * n;
  for (int k = 0; k < blocks; k++) {
    const int64_t c = c0 + k * VW;
    const int cnt = k == blocks - 1 ? last : VW;
    D[k] = vload_part(a->D + c, cnt);
    bias[k] = vload_part(a->dt_bias + c, cnt);
    for (int64_t s = 0; s < n; s++) { /* [d, n] -> lanes over channels */
      vf hv = vsplat(0.0f), av = vsplat(0.0f);
      for (int j = 0; j < cnt; j++) {
        hv[j] = h0[(c + j) * n + s];
        av[j] = a->A[(c + j) * n + s];
      }
      h[k][s] = hv;
      At[k][s] = av;
    }
  }
  const int64_t row = bi * l * d;
  for (int64_t t = 0; t < l; t++) {
    const int64_t o = row + t * d + c0;
    if (t + 4 < l) { /* rows are d floats apart: fetch a few tokens ahead, the prefetcher stops at page ends */
      const int64_t ahead = o + 4 * d;
      for (int k = 0; k < blocks; k += 2) {
        __builtin_prefetch(a->dt + ahead + k * VW);
        __builtin_prefetch(a->x + ahead + k * VW);
        __builtin_prefetch(a->z + ahead + k * VW);
      }
    }
    const float* Bt = a->B + (bi * l + t) * n;
    const float* Ct = a->C + (bi * l + t) * n;
    for (int k = 0; k < blocks; k++) {
      const int cnt = BLOCKS ? VW : k == blocks - 1 ? last : VW;
      const int64_t ok = o + k * VW;
      const bool full = BLOCKS || cnt == VW;
      const vf x = full ? vload(a->x + ok) : vload_part(a->x + ok, cnt);
      const vf dt = full ? vload(a->dt + ok) : vload_part(a->dt + ok, cnt);
      const vf delta = vsoftplus(dt + bias[k]);
      const vf dx = delta * x;
      vf acc0 = vsplat(0.0f), acc1 = vsplat(0.0f); /* two chains: the sum over states is not one long latency chain */
      vf* hk = h[k];
      const vf* Ak = At[k];
      int64_t s = 0;
#pragma GCC unroll 16
      for (; s + 1 < n; s += 2) {
        const vf dA0 = vexp_neg(delta * Ak[s]), dA1 = vexp_neg(delta * Ak[s + 1]);
        hk[s] = dA0 * hk[s] + dx * vsplat(Bt[s]);
        hk[s + 1] = dA1 * hk[s + 1] + dx * vsplat(Bt[s + 1]);
        acc0 += hk[s] * vsplat(Ct[s]);
        acc1 += hk[s + 1] * vsplat(Ct[s + 1]);
      }
      if (s < n) {
        hk[s] = vexp_neg(delta * Ak[s]) * hk[s] + dx * vsplat(Bt[s]);
        acc0 += hk[s] * vsplat(Ct[s]);
      }
      const vf z = full ? vload(a->z + ok) : vload_part(a->z + ok, cnt);
      const vf y = (acc0 + acc1 + D[k] * x) * vsilu(z);
      if (full) vstore(a->y + ok, y);
      else vstore_part(a->y + ok, y, cnt);
    }
  }
  float* h_out = a->h_out + bi * d * n;
  for (int k = 0; k < blocks; k++) {
    const int64_t c = c0 + k * VW;
    const int cnt = k == blocks - 1 ? last : VW;
    for (int64_t s = 0; s < n; s++)
      for (int j = 0; j < cnt; j++) h_out[(c + j) * n + s] = h[k][s][j];
  }
}

/* One token (the decode step), d_state 16: lanes over the state instead of channels, so h and A are read in
 * their [d, n] layout as they are (the scan's transposition into channel lanes costs more than one token's
 * work). Per channel: two vectors of state, two of A, a horizontal sum for C . h. */
static void step_task16(const CobraScanArgs* a, int64_t bi, int64_t c0, int64_t channels) {
  const int64_t d = a->d;
  const float* Bt = a->B + bi * 16;
  const float* Ct = a->C + bi * 16;
  const vf B0 = vload(Bt), B1 = vload(Bt + VW), C0 = vload(Ct), C1 = vload(Ct + VW);
  const float* h0 = a->h0 + bi * d * 16;
  float* h_out = a->h_out + bi * d * 16;
  for (int64_t c = c0; c < c0 + channels; c += VW) {
    const int cnt = c0 + channels - c < VW ? (int)(c0 + channels - c) : VW;
    const int64_t o = bi * d + c;
    const vf x = vload_part(a->x + o, cnt), z = vload_part(a->z + o, cnt);
    const vf delta = vsoftplus(vload_part(a->dt + o, cnt) + vload_part(a->dt_bias + c, cnt));
    const vf dx = delta * x;
    vf r[VW]; /* r[j]: lanes of C * h for channel c + j, summed over the state by vsum8 */
    for (int j = cnt; j < VW; j++) r[j] = vsplat(0.0f);
    for (int j = 0; j < cnt; j++) {
      const float* hc = h0 + (c + j) * 16;
      const float* Ac = a->A + (c + j) * 16;
      const vf dj = vsplat(delta[j]), dxj = vsplat(dx[j]);
      const vf s0 = vexp_neg(dj * vload(Ac)) * vload(hc) + dxj * B0;
      const vf s1 = vexp_neg(dj * vload(Ac + VW)) * vload(hc + VW) + dxj * B1;
      vstore(h_out + (c + j) * 16, s0);
      vstore(h_out + (c + j) * 16 + VW, s1);
      r[j] = s0 * C0 + s1 * C1;
    }
    vstore_part(a->y + o, (vsum8(r) + vload_part(a->D + c, cnt) * x) * vsilu(z), cnt);
  }
}

static void run_task(const CobraScanArgs* a, int64_t bi, int64_t c0, int64_t channels) {
  const bool full = channels == (int64_t)kBlocks * VW;
  if (a->l == 1 && a->n == 16) {
    step_task16(a, bi, c0, channels);
    return;
  }
  if (a->n == 16) {
    if (full) scan_task<16, kBlocks>(a, bi, c0, channels);
    else scan_task<16, 0>(a, bi, c0, channels);
  } else {
    if (full) scan_task<0, kBlocks>(a, bi, c0, channels);
    else scan_task<0, 0>(a, bi, c0, channels);
  }
}
