/* The source bank's kernels for the CPU (docs/attnres.md, "Memory and speed").
 *
 * Built and loaded by pair_kernel.py. Every array is contiguous and row-major; "token" runs over
 * all batch positions and tokens (T of them), "d" over channels. The bank is larger than the
 * cache, so the kernels are bound by memory traffic and are laid out for it: work is split into
 * chunks of CHUNK tokens, whose rows of the output stay in cache while the kernel streams the
 * chunk's rows of each source (or consumer gradient) in turn, GROUP of them at a time, so each
 * input row is read once and the output row is updated once per GROUP inputs. A dot product over
 * channels keeps LANES partial sums (one per channel modulo LANES), so that it vectorises without
 * reordering the sum, and adds them in a fixed order. Chunks run in parallel and each walks its
 * inputs in a fixed order, so the result does not depend on the number of threads. The loops are
 * compiled for AVX-512, AVX2 and plain x86-64 or the host's baseline (target_clones), and the
 * loader picks the one the CPU runs at load time.
 */
#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

#define CHUNK 32 /* tokens per chunk: 32 rows of 384 floats are 48 KB */
#define GROUP 4  /* inputs read together per output update */
#define LANES 16 /* partial sums of a dot product: one AVX-512 vector of floats */

#define FOR_CHUNKS(T, threads, BODY)                                                           \
  _Pragma("omp parallel for schedule(static) num_threads(threads)")                            \
  for (int64_t c = 0; c < ((T) + CHUNK - 1) / CHUNK; ++c) {                                    \
    const int64_t t0 = c * CHUNK, t1 = t0 + CHUNK < (T) ? t0 + CHUNK : (T);                    \
    BODY;                                                                                      \
  }

/* BODY(x, l) for every channel x < d, with l = x % LANES: the lane whose partial sums channel x
 * adds to. Whole runs of LANES channels first, so the compiler vectorises over l. */
#define FOR_LANES(d, BODY)                                                                     \
  {                                                                                            \
    int64_t x0 = 0;                                                                            \
    for (; x0 + LANES <= (d); x0 += LANES)                                                     \
      for (int l = 0; l < LANES; ++l) { const int64_t x = x0 + l; BODY; }                      \
    for (int64_t x = x0; x < (d); ++x) { const int l = (int)(x - x0); BODY; }                  \
  }

/* The inner loops, inlined with a constant n (GROUP, or 1 for the inputs left over) so that the
 * compiler unrolls the group and vectorises over channels. */
#define INLINE static inline __attribute__((always_inline))
#define RESTRICT __restrict__ /* rows the kernels write never overlap the rows they read */

/* The sum of a dot product's LANES partial sums, pairwise in a fixed order (halves added
 * lane by lane), which takes log2(LANES) dependent additions instead of LANES. */
#define LANE_SUM(REAL)                                                                         \
  INLINE REAL REAL##_lane_sum(REAL* lanes) {                                                   \
    for (int w = LANES / 2; w > 0; w /= 2)                                                     \
      for (int l = 0; l < w; ++l) lanes[l] += lanes[l + w];                                    \
    return lanes[0];                                                                           \
  }

/* out[t] = sum_i w[i][t] v[i][t] over k sources. */
#define WEIGHTED_SUM(NAME, REAL)                                                               \
  INLINE void NAME##_rows(const REAL* v, const REAL* w, REAL* out, int64_t i, const int n,    \
                          int64_t T, int64_t d, int64_t t0, int64_t t1) {                     \
    for (int64_t t = t0; t < t1; ++t) {                                                        \
      REAL* o = out + t * d;                                                                   \
      const REAL* vi[GROUP];                                                                   \
      REAL a[GROUP];                                                                           \
      for (int u = 0; u < n; ++u) {                                                            \
        vi[u] = v + ((i + u) * T + t) * d;                                                     \
        a[u] = w[(i + u) * T + t];                                                             \
      }                                                                                        \
      for (int64_t x = 0; x < d; ++x) {                                                        \
        REAL s = o[x];                                                                         \
        for (int u = 0; u < n; ++u) s += a[u] * vi[u][x];                                      \
        o[x] = s;                                                                              \
      }                                                                                        \
    }                                                                                          \
  }                                                                                            \
  CLONES static void NAME##_chunk(const REAL* v, const REAL* w, REAL* out, int64_t k,         \
                                  int64_t T, int64_t d, int64_t t0, int64_t t1) {             \
    for (int64_t x = t0 * d; x < t1 * d; ++x) out[x] = 0;                                      \
    int64_t i = 0;                                                                             \
    for (; i + GROUP <= k; i += GROUP) NAME##_rows(v, w, out, i, GROUP, T, d, t0, t1);         \
    for (; i < k; ++i) NAME##_rows(v, w, out, i, 1, T, d, t0, t1);                             \
  }                                                                                            \
  void NAME(const REAL* v, const REAL* w, REAL* out, int64_t k, int64_t T, int64_t d,         \
            int threads) {                                                                     \
    FOR_CHUNKS(T, threads, NAME##_chunk(v, w, out, k, T, d, t0, t1))                           \
  }

/* For one source v (T x d) and the m consumers that read it, with output gradients g[l]
 * (T x d each, one block), weights w[l][t] of the source and out_dots[l][t] (the consumer's
 * output dotted with its gradient):
 *   grad[t]      = sum_l w[l][t] g[l][t]                       (through the weighted sums)
 *   logit[l][t]  = w[l][t] (v[t] . g[l][t] - out_dots[l][t])  (through each softmax)
 * Each g[l][t] row is read once, for both. */
#define SOURCE_GRADS(NAME, REAL)                                                               \
  INLINE void NAME##_rows(const REAL* v, const REAL* g, const REAL* w, const REAL* out_dots,  \
                          REAL* grad, REAL* logit, int64_t l0, const int n, int64_t T,        \
                          int64_t d, int64_t t0, int64_t t1) {                                \
    for (int64_t t = t0; t < t1; ++t) {                                                        \
      const REAL* vt = v + t * d;                                                              \
      REAL* acc = grad + t * d;                                                                \
      const REAL* gl[GROUP];                                                                   \
      REAL a[GROUP], dot[GROUP][LANES] = {{0}};                                                \
      for (int u = 0; u < n; ++u) {                                                            \
        gl[u] = g + ((l0 + u) * T + t) * d;                                                    \
        a[u] = w[(l0 + u) * T + t];                                                            \
      }                                                                                        \
      FOR_LANES(d, {                                                                           \
        REAL s = acc[x];                                                                       \
        for (int u = 0; u < n; ++u) {                                                          \
          dot[u][l] += gl[u][x] * vt[x];                                                       \
          s += a[u] * gl[u][x];                                                                \
        }                                                                                      \
        acc[x] = s;                                                                            \
      })                                                                                       \
      for (int u = 0; u < n; ++u)                                                              \
        logit[(l0 + u) * T + t] = a[u] * (REAL##_lane_sum(dot[u]) - out_dots[(l0 + u) * T + t]); \
    }                                                                                          \
  }                                                                                            \
  CLONES static void NAME##_chunk(const REAL* v, const REAL* g, const REAL* w,                 \
                                  const REAL* out_dots, REAL* grad, REAL* logit, int64_t m,   \
                                  int64_t T, int64_t d, int64_t t0, int64_t t1) {             \
    for (int64_t x = t0 * d; x < t1 * d; ++x) grad[x] = 0;                                     \
    int64_t l = 0;                                                                             \
    for (; l + GROUP <= m; l += GROUP)                                                         \
      NAME##_rows(v, g, w, out_dots, grad, logit, l, GROUP, T, d, t0, t1);                     \
    for (; l < m; ++l) NAME##_rows(v, g, w, out_dots, grad, logit, l, 1, T, d, t0, t1);        \
  }                                                                                            \
  void NAME(const REAL* v, const REAL* g, const REAL* w, const REAL* out_dots, REAL* grad,    \
            REAL* logit, int64_t m, int64_t T, int64_t d, int threads) {                      \
    FOR_CHUNKS(T, threads, NAME##_chunk(v, g, w, out_dots, grad, logit, m, T, d, t0, t1))      \
  }

/* One consumer's record in the backward pass, from its output gradient g (T x d) and its output
 * out (T x d): og[t] = g[t] (its row of the bank's gradient block) and od[t] = out[t] . g[t].
 * If it also read a partial block sum p (T x d; NULL if not), with weight a[t], inverse RMS r[t]
 * and logit s[t] = r[t] (p[t] . u) against the folded query u (d), also p's gradients:
 *   gsr[t] = a[t] (p[t] . g[t] - od[t]) r[t]              (its logit's gradient, times r[t])
 *   gp[t]  = a[t] g[t] + gsr[t] u - gsr[t] s[t] r[t] / d p[t]
 * through the weighted sum and through the logit (the RMS included). One read of each row. */
#define CONSUMER_GRADS(NAME, REAL)                                                             \
  CLONES static void NAME##_chunk(const REAL* g, const REAL* out, const REAL* p,              \
                                  const REAL* a, const REAL* r, const REAL* s, const REAL* u, \
                                  REAL* og, REAL* od, REAL* gp, REAL* gsr, int64_t d,         \
                                  int64_t t0, int64_t t1) {                                   \
    for (int64_t t = t0; t < t1; ++t) {                                                        \
      const REAL *RESTRICT gt = g + t * d, *RESTRICT ot = out + t * d;                         \
      REAL* RESTRICT ogt = og + t * d;                                                         \
      REAL out_dot[LANES] = {0}, p_dot[LANES] = {0};                                           \
      FOR_LANES(d, { ogt[x] = gt[x]; out_dot[l] += ot[x] * gt[x]; })                           \
      od[t] = REAL##_lane_sum(out_dot);                                                        \
      if (!p) continue;                                                                        \
      /* a loop of its own: with both sums in one, the AVX2 and AVX-512 builds ran 2.3 times   \
       * slower */                                                                             \
      const REAL* RESTRICT pt = p + t * d;                                                     \
      FOR_LANES(d, p_dot[l] += pt[x] * gt[x])                                                  \
      const REAL at = a[t], gsrt = at * (REAL##_lane_sum(p_dot) - od[t]) * r[t];               \
      const REAL c = -gsrt * s[t] * r[t] / (REAL)d;                                            \
      gsr[t] = gsrt;                                                                           \
      REAL* RESTRICT gpt = gp + t * d;                                                         \
      const REAL* RESTRICT ut = u;                                                             \
      for (int64_t x = 0; x < d; ++x) gpt[x] = at * gt[x] + gsrt * ut[x] + c * pt[x];          \
    }                                                                                          \
  }                                                                                            \
  void NAME(const REAL* g, const REAL* out, const REAL* p, const REAL* a, const REAL* r,      \
            const REAL* s, const REAL* u, REAL* og, REAL* od, REAL* gp, REAL* gsr, int64_t T, \
            int64_t d, int threads) {                                                          \
    FOR_CHUNKS(T, threads, NAME##_chunk(g, out, p, a, r, s, u, og, od, gp, gsr, d, t0, t1))    \
  }

LANE_SUM(float)
LANE_SUM(double)
WEIGHTED_SUM(arcal_weighted_sum_f32, float)
WEIGHTED_SUM(arcal_weighted_sum_f64, double)
SOURCE_GRADS(arcal_source_grads_f32, float)
SOURCE_GRADS(arcal_source_grads_f64, double)
CONSUMER_GRADS(arcal_consumer_grads_f32, float)
CONSUMER_GRADS(arcal_consumer_grads_f64, double)
