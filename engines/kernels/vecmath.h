/* Eight-lane float vectors (GCC/Clang vector extensions: AVX2 registers on x86-64, two NEON registers on aarch64)
 * and the few transcendental functions the selective scan needs, accurate to about 1 ulp of float32:
 *
 *   vexp_neg(x)   e^x for x <= 0 (the discretised decay exp(dt * A), A < 0, dt >= 0)
 *   vexp(x)       e^x for any x (the SiLU gate)
 *   vsoftplus(v)  log(1 + e^v) = max(v, 0) + log1p(e^-|v|), with log1p accurate for tiny arguments
 *
 * Written here rather than called from libm because libm's scalar expf is ~10x slower than one vector polynomial
 * and the scan evaluates one exponential per (token, channel, state): 18.7 M per layer for a 761-token prefill
 * of mamba-130m.
 */
/* No include guard and no #include on purpose: selective_scan.cc includes this file (through scan_impl.h) once per
 * instruction set, inside a namespace compiled for that set, after <stdint.h> and <string.h>. */

typedef float vf __attribute__((vector_size(32)));
typedef int32_t vi __attribute__((vector_size(32)));
enum { VW = 8 }; /* lanes */

static inline vf vsplat(float v) { return vf{v, v, v, v, v, v, v, v}; }
static inline vf vmax(vf a, vf b) { return a > b ? a : b; }
static inline vf vmin(vf a, vf b) { return a < b ? a : b; }

static inline vf vload(const float* p) {
  vf v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void vstore(float* p, vf v) { memcpy(p, &v, sizeof v); }
/* the first cnt lanes (cnt <= VW), the rest zero: the tail of a channel range that is not a multiple of 8 */
static inline vf vload_part(const float* p, int cnt) {
  vf v = vsplat(0.0f);
  memcpy(&v, p, (size_t)cnt * sizeof(float));
  return v;
}
static inline void vstore_part(float* p, vf v, int cnt) { memcpy(p, &v, (size_t)cnt * sizeof(float)); }

/* e^x = 2^k * e^r, k = round(x / ln 2), r = x - k ln 2 in [-ln2/2, ln2/2] (ln 2 split in two for exactness),
 * e^r by a degree-7 polynomial (Cephes' expf coefficients). Below x = -86.6 the result is 0 (e^x < 2.4e-38: an
 * absolute error below FLT_MIN), so no denormal ever leaves this function: denormal arithmetic costs x86 cores
 * a microcode assist per operation, and a state decaying through them would slow the whole scan. */
static inline vf vexp_neg(vf x) {
  const vi tiny = x < vsplat(-86.6f);
  x = vmax(x, vsplat(-86.6f));
  const vf k = (x * vsplat(1.44269504088896341f) + vsplat(12582912.0f)) - vsplat(12582912.0f); /* round */
  vf r = x - k * vsplat(0.693359375f);
  r = r - k * vsplat(-2.12194440e-4f);
  vf p = vsplat(1.9875691500e-4f);
  p = p * r + vsplat(1.3981999507e-3f);
  p = p * r + vsplat(8.3334519073e-3f);
  p = p * r + vsplat(4.1665795894e-2f);
  p = p * r + vsplat(1.6666665459e-1f);
  p = p * r + vsplat(5.0000001201e-1f);
  p = p * (r * r) + r + vsplat(1.0f);
  const vi bits = (__builtin_convertvector(k, vi) + 127) << 23;
  vf scale;
  memcpy(&scale, &bits, sizeof scale);
  return tiny ? vsplat(0.0f) : p * scale;
}

static inline vf vexp(vf x) { return vexp_neg(vmin(x, vsplat(88.3762626647949f))); }

/* log(1 + e) for e in [0, 1] as 2 atanh(s), s = e / (2 + e) in [0, 1/3]: the odd series to s^13 (truncation
 * below 2e-8 relative), exact for tiny e where log(1 + e) computed directly would lose e's digits */
static inline vf vlog1p_unit(vf e) {
  const vf s = e / (vsplat(2.0f) + e), s2 = s * s;
  vf p = vsplat(2.0f / 13.0f);
  p = p * s2 + vsplat(2.0f / 11.0f);
  p = p * s2 + vsplat(2.0f / 9.0f);
  p = p * s2 + vsplat(2.0f / 7.0f);
  p = p * s2 + vsplat(2.0f / 5.0f);
  p = p * s2 + vsplat(2.0f / 3.0f);
  p = p * s2 + vsplat(2.0f);
  return p * s;
}

static inline vf vsoftplus(vf v) { return vmax(v, vsplat(0.0f)) + vlog1p_unit(vexp_neg(vmin(v, -v))); }

static inline vf vsilu(vf z) { return z / (vsplat(1.0f) + vexp(-z)); }

/* Lane shuffles of two vectors: the result's lane i is lane idx[i] of the 16 lanes (a, b). */
#if defined(__clang__)
#define VSHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define VSHUFFLE(a, b, ...) __builtin_shuffle(a, b, vi{__VA_ARGS__})
#endif

/* Horizontal sums of eight vectors at once: lane j of the result is the sum of r[j]'s lanes. A transposing
 * reduction (pairs, quads, halves: 7 adds and 14 shuffles) instead of eight lane-by-lane sums (~120 operations):
 * the decode step reduces C . h over the state for every channel. */
static inline vf vsum8(const vf r[8]) {
  vf t[4], u[2];
  for (int i = 0; i < 4; i++)  /* lanes (r[2i] pair sums, r[2i+1] pair sums) interleaved */
    t[i] = VSHUFFLE(r[2 * i], r[2 * i + 1], 0, 8, 2, 10, 4, 12, 6, 14) +
           VSHUFFLE(r[2 * i], r[2 * i + 1], 1, 9, 3, 11, 5, 13, 7, 15);
  for (int i = 0; i < 2; i++)  /* lanes 0-3: quad sums of the low halves of r[4i..4i+3]; 4-7: of the high halves */
    u[i] = VSHUFFLE(t[2 * i], t[2 * i + 1], 0, 1, 8, 9, 4, 5, 12, 13) +
           VSHUFFLE(t[2 * i], t[2 * i + 1], 2, 3, 10, 11, 6, 7, 14, 15);
  return VSHUFFLE(u[0], u[1], 0, 1, 2, 3, 8, 9, 10, 11) + VSHUFFLE(u[0], u[1], 4, 5, 6, 7, 12, 13, 14, 15);
}
