/* The source bank's pair kernels for the CPU (docs/attnres.md, "Memory and speed").
 *
 * Built and loaded by pair_kernel.py. Every array is contiguous and row-major; "token" runs over
 * all batch positions and tokens (T of them), "d" over channels. Each kernel is parallel over
 * tokens and walks a token's pairs in a fixed order, so its result does not depend on the number
 * of threads. The per-token work is compiled for AVX-512, AVX2 and plain x86-64 or the host's
 * baseline (target_clones), and the loader picks the one the CPU runs at load time.
 */
#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

/* out[t] = sum_i w[i][t] v[i][t] over k sources: each source row is read once. */
#define WEIGHTED_SUM(NAME, REAL)                                                               \
  CLONES static void NAME##_token(const REAL* v, const REAL* w, REAL* out, int64_t k,         \
                                  int64_t T, int64_t d, int64_t t) {                          \
    REAL* o = out + t * d;                                                                     \
    const REAL a0 = w[t];                                                                      \
    const REAL* v0 = v + t * d;                                                                \
    for (int64_t x = 0; x < d; ++x) o[x] = a0 * v0[x];                                         \
    for (int64_t i = 1; i < k; ++i) {                                                          \
      const REAL a = w[i * T + t];                                                             \
      const REAL* vi = v + (i * T + t) * d;                                                    \
      for (int64_t x = 0; x < d; ++x) o[x] += a * vi[x];                                       \
    }                                                                                          \
  }                                                                                            \
  void NAME(const REAL* v, const REAL* w, REAL* out, int64_t k, int64_t T, int64_t d,         \
            int threads) {                                                                     \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                          \
    for (int64_t t = 0; t < T; ++t) NAME##_token(v, w, out, k, T, d, t);                       \
  }

/* For one source v (T x d) and the m consumers that read it, with output gradients g[l]
 * (T x d each, one block), weights w[l][t] of the source and out_dots[l][t] (the consumer's
 * output dotted with its gradient):
 *   grad[t]      = sum_l w[l][t] g[l][t]                       (through the weighted sums)
 *   logit[l][t]  = w[l][t] (v[t] . g[l][t] - out_dots[l][t])  (through each softmax)
 * Each g[l][t] row is read once, for both. */
#define SOURCE_GRADS(NAME, REAL)                                                               \
  CLONES static void NAME##_token(const REAL* v, const REAL* g, const REAL* w,                 \
                                  const REAL* out_dots, REAL* grad, REAL* logit, int64_t m,   \
                                  int64_t T, int64_t d, int64_t t) {                          \
    const REAL* vt = v + t * d;                                                                \
    REAL* acc = grad + t * d;                                                                  \
    for (int64_t x = 0; x < d; ++x) acc[x] = 0;                                                \
    for (int64_t l = 0; l < m; ++l) {                                                          \
      const REAL* gl = g + (l * T + t) * d;                                                    \
      const REAL a = w[l * T + t];                                                             \
      REAL dot = 0;                                                                            \
      _Pragma("omp simd reduction(+ : dot)")                                                   \
      for (int64_t x = 0; x < d; ++x) {                                                        \
        dot += gl[x] * vt[x];                                                                  \
        acc[x] += a * gl[x];                                                                   \
      }                                                                                        \
      logit[l * T + t] = a * (dot - out_dots[l * T + t]);                                      \
    }                                                                                          \
  }                                                                                            \
  void NAME(const REAL* v, const REAL* g, const REAL* w, const REAL* out_dots, REAL* grad,    \
            REAL* logit, int64_t m, int64_t T, int64_t d, int threads) {                      \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                          \
    for (int64_t t = 0; t < T; ++t)                                                            \
      NAME##_token(v, g, w, out_dots, grad, logit, m, T, d, t);                                \
  }

WEIGHTED_SUM(arcal_weighted_sum_f32, float)
WEIGHTED_SUM(arcal_weighted_sum_f64, double)
SOURCE_GRADS(arcal_source_grads_f32, float)
SOURCE_GRADS(arcal_source_grads_f64, double)
