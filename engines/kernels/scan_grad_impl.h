/* The training recurrence's forward and backward bodies (contract in scan_grad.h). No include guard and no
 * #include on purpose: scan_grad.cc includes it once per instruction set, inside a namespace compiled for that set. */
#include "vecmath.h"

enum { kGroup = 8 }; /* vectors of VW channels per group: 64 channels */

/* One group of channels [c0, c0 + channels) of row bi: lanes over channels, the state as [block][state] vectors. */
struct Group {
  int blocks, last; /* vectors in the group, lanes used in its last vector */
  int64_t c0;
  int cnt(int k) const { return k == blocks - 1 ? last : VW; }
};

static inline vf load_c(const float* p, int cnt) { return cnt == VW ? vload(p) : vload_part(p, cnt); }
static inline void store_c(float* p, vf v, int cnt) {
  if (cnt == VW) vstore(p, v);
  else vstore_part(p, v, cnt);
}

/* [d, n] rows of channels c .. c + cnt -> n vectors of channel lanes */
static void gather_state(const float* src, int64_t c, int cnt, int64_t n, vf* out) {
  for (int64_t s = 0; s < n; s++) {
    vf v = vsplat(0.0f);
    for (int j = 0; j < cnt; j++) v[j] = src[(c + j) * n + s];
    out[s] = v;
  }
}
static void scatter_state(float* dst, int64_t c, int cnt, int64_t n, const vf* in, bool add) {
  for (int64_t s = 0; s < n; s++)
    for (int j = 0; j < cnt; j++) dst[(c + j) * n + s] = (add ? dst[(c + j) * n + s] : 0.0f) + in[s][j];
}

/* sum of each vector's lanes, for n vectors (n <= COBRA_SCAN_MAX_STATE), added into out[0 .. n) */
static void add_lane_sums(const vf* v, int64_t n, float* out) {
  int64_t s = 0;
  for (; s + 8 <= n; s += 8) {
    const vf r = vsum8(v + s);
    for (int j = 0; j < 8; j++) out[s + j] += r[j];
  }
  for (; s < n; s++) {
    float t = 0.0f;
    for (int j = 0; j < VW; j++) t += v[s][j];
    out[s] += t;
  }
}

/* Forward over the l tokens of one group; hs (optional): every h_t, [l][blocks][n] vectors. */
static void group_forward(const CobraScanGradArgs* a, int64_t bi, const Group& g, vf* hs) {
  const int64_t l = a->l, d = a->d, n = a->n;
  vf h[kGroup][COBRA_SCAN_MAX_STATE], At[kGroup][COBRA_SCAN_MAX_STATE];
  for (int k = 0; k < g.blocks; k++) {
    gather_state(a->h0 + bi * d * n, g.c0 + k * VW, g.cnt(k), n, h[k]);
    gather_state(a->A, g.c0 + k * VW, g.cnt(k), n, At[k]);
  }
  for (int64_t t = 0; t < l; t++) {
    const int64_t o = (bi * l + t) * d + g.c0;
    const float* Bt = a->B + (bi * l + t) * n;
    const float* Ct = a->C + (bi * l + t) * n;
    for (int k = 0; k < g.blocks; k++) {
      const int cnt = g.cnt(k);
      const vf delta = load_c(a->delta + o + k * VW, cnt), dx = delta * load_c(a->x + o + k * VW, cnt);
      vf acc = vsplat(0.0f);
      for (int64_t s = 0; s < n; s++) {
        h[k][s] = vexp_neg(delta * At[k][s]) * h[k][s] + dx * vsplat(Bt[s]);
        acc += h[k][s] * vsplat(Ct[s]);
      }
      if (hs) memcpy(hs + (t * g.blocks + k) * n, h[k], (size_t)n * sizeof(vf));
      if (a->y) store_c(a->y + o + k * VW, acc, cnt);
    }
  }
  if (a->h_out)
    for (int k = 0; k < g.blocks; k++) scatter_state(a->h_out + bi * d * n, g.c0 + k * VW, g.cnt(k), n, h[k], false);
}

/* Backward over one group, from the states hs its forward stored. */
static void group_backward(const CobraScanGradArgs* a, int64_t bi, const Group& g, const vf* hs) {
  const int64_t l = a->l, d = a->d, n = a->n;
  vf gh[kGroup][COBRA_SCAN_MAX_STATE], At[kGroup][COBRA_SCAN_MAX_STATE], gA[kGroup][COBRA_SCAN_MAX_STATE];
  vf h0[kGroup][COBRA_SCAN_MAX_STATE];
  vf accB[COBRA_SCAN_MAX_STATE], accC[COBRA_SCAN_MAX_STATE];
  for (int k = 0; k < g.blocks; k++) {
    gather_state(a->A, g.c0 + k * VW, g.cnt(k), n, At[k]);
    gather_state(a->h0 + bi * d * n, g.c0 + k * VW, g.cnt(k), n, h0[k]);
    if (a->gh) gather_state(a->gh + bi * d * n, g.c0 + k * VW, g.cnt(k), n, gh[k]);
    else
      for (int64_t s = 0; s < n; s++) gh[k][s] = vsplat(0.0f);
    for (int64_t s = 0; s < n; s++) gA[k][s] = vsplat(0.0f);
  }
  for (int64_t t = l - 1; t >= 0; t--) {
    const int64_t o = (bi * l + t) * d + g.c0;
    const float* Bt = a->B + (bi * l + t) * n;
    const float* Ct = a->C + (bi * l + t) * n;
    for (int64_t s = 0; s < n; s++) accB[s] = accC[s] = vsplat(0.0f);
    for (int k = 0; k < g.blocks; k++) {
      const int cnt = g.cnt(k);
      const vf delta = load_c(a->delta + o + k * VW, cnt), x = load_c(a->x + o + k * VW, cnt);
      const vf gy = load_c(a->gy + o + k * VW, cnt), dx = delta * x;
      const vf* ht = hs + (t * g.blocks + k) * n;
      const vf* hp = t ? hs + ((t - 1) * g.blocks + k) * n : h0[k];
      vf gx = vsplat(0.0f), gdelta = vsplat(0.0f);
      for (int64_t s = 0; s < n; s++) {
        const vf dA = vexp_neg(delta * At[k][s]);
        const vf gs = gh[k][s] + gy * vsplat(Ct[s]);
        accC[s] += gy * ht[s];
        accB[s] += gs * dx;
        const vf t1 = gs * hp[s] * dA;
        gA[k][s] += t1 * delta;
        gdelta += t1 * At[k][s] + gs * x * vsplat(Bt[s]);
        gx += gs * delta * vsplat(Bt[s]);
        gh[k][s] = gs * dA;
      }
      store_c(a->gx + o + k * VW, gx, cnt);
      store_c(a->gdelta + o + k * VW, gdelta, cnt);
    }
    add_lane_sums(accB, n, a->gB + (bi * l + t) * n);
    add_lane_sums(accC, n, a->gC + (bi * l + t) * n);
  }
  for (int k = 0; k < g.blocks; k++) {
    scatter_state(a->gh0 + bi * d * n, g.c0 + k * VW, g.cnt(k), n, gh[k], false);
    scatter_state(a->gA, g.c0 + k * VW, g.cnt(k), n, gA[k], true);
  }
}

static Group group_at(int64_t d, int64_t c0) {
  const int64_t channels = d - c0 < (int64_t)kGroup * VW ? d - c0 : (int64_t)kGroup * VW;
  Group g;
  g.c0 = c0;
  g.blocks = (int)((channels + VW - 1) / VW);
  g.last = (int)(channels - (int64_t)(g.blocks - 1) * VW);
  return g;
}

static int recurrence(const CobraScanGradArgs* a) {
  for (int64_t bi = 0; bi < a->b; bi++)
    for (int64_t c0 = 0; c0 < a->d; c0 += (int64_t)kGroup * VW) group_forward(a, bi, group_at(a->d, c0), nullptr);
  return 0;
}

static int recurrence_grad(const CobraScanGradArgs* a) {
  const size_t bytes = (size_t)(a->l > 0 ? a->l : 1) * kGroup * (size_t)a->n * sizeof(vf);
  vf* hs = (vf*)aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!hs) return -2;
  memset(a->gB, 0, (size_t)(a->b * a->l * a->n) * sizeof(float));
  memset(a->gC, 0, (size_t)(a->b * a->l * a->n) * sizeof(float));
  for (int64_t bi = 0; bi < a->b; bi++)
    for (int64_t c0 = 0; c0 < a->d; c0 += (int64_t)kGroup * VW) {
      const Group g = group_at(a->d, c0);
      group_forward(a, bi, g, hs);
      group_backward(a, bi, g, hs);
    }
  free(hs);
  return 0;
}
