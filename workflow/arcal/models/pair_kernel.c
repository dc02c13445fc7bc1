/* The source bank's pair kernels for the CPU (docs/attnres.md, "Memory and speed").
 *
 * Built and loaded by pair_kernel.py. Every array is contiguous and row-major; "token" runs over
 * all batch positions and tokens (T of them), "d" over channels. The bank is larger than the
 * cache, so the kernels are bound by memory traffic and are laid out for it: work is split into
 * chunks of CHUNK tokens, whose rows of the output stay in cache while the kernel streams the
 * chunk's rows of each source (or consumer gradient) in turn, GROUP of them at a time, so each
 * input row is read once and the output row is updated once per GROUP inputs. Chunks run in
 * parallel and each walks its inputs in a fixed order, so the result does not depend on the
 * number of threads. The loops are compiled for AVX-512, AVX2 and plain x86-64 or the host's
 * baseline (target_clones), and the loader picks the one the CPU runs at load time.
 */
#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

#define CHUNK 32 /* tokens per chunk: 32 rows of 384 floats are 48 KB */
#define GROUP 4  /* inputs read together per output update */

#define FOR_CHUNKS(T, threads, BODY)                                                           \
  _Pragma("omp parallel for schedule(static) num_threads(threads)")                            \
  for (int64_t c = 0; c < ((T) + CHUNK - 1) / CHUNK; ++c) {                                    \
    const int64_t t0 = c * CHUNK, t1 = t0 + CHUNK < (T) ? t0 + CHUNK : (T);                    \
    BODY;                                                                                      \
  }

/* The inner loops, inlined with a constant n (GROUP, or 1 for the inputs left over) so that the
 * compiler unrolls the group and vectorises over channels. */
#define INLINE static inline __attribute__((always_inline))

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
                          REAL* grad, REAL* logit, int64_t l, const int n, int64_t T,         \
                          int64_t d, int64_t t0, int64_t t1) {                                \
    for (int64_t t = t0; t < t1; ++t) {                                                        \
      const REAL* vt = v + t * d;                                                              \
      REAL* acc = grad + t * d;                                                                \
      const REAL* gl[GROUP];                                                                   \
      REAL a[GROUP], dot[GROUP];                                                               \
      for (int u = 0; u < n; ++u) {                                                            \
        gl[u] = g + ((l + u) * T + t) * d;                                                     \
        a[u] = w[(l + u) * T + t];                                                             \
        dot[u] = 0;                                                                            \
      }                                                                                        \
      for (int64_t x = 0; x < d; ++x) {                                                        \
        REAL s = acc[x];                                                                       \
        for (int u = 0; u < n; ++u) {                                                          \
          dot[u] += gl[u][x] * vt[x];                                                          \
          s += a[u] * gl[u][x];                                                                \
        }                                                                                      \
        acc[x] = s;                                                                            \
      }                                                                                        \
      for (int u = 0; u < n; ++u)                                                              \
        logit[(l + u) * T + t] = a[u] * (dot[u] - out_dots[(l + u) * T + t]);                  \
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

WEIGHTED_SUM(arcal_weighted_sum_f32, float)
WEIGHTED_SUM(arcal_weighted_sum_f64, double)
SOURCE_GRADS(arcal_source_grads_f32, float)
SOURCE_GRADS(arcal_source_grads_f64, double)
