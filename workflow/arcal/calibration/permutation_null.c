/* The within-bin permutation null for the CPU (permutation.py, "How the null is drawn").
 *
 * Built and loaded by permutation.py. Random bits come from the caller's numpy bit generator
 * through numpy's C interface (numpy/random/bitgen.h), so the stream is numpy's and is seeded,
 * spawned and locked the numpy way. Results do not depend on the compiler's choice of
 * instructions: sums run in a fixed order and -ffp-contract=off keeps a * b + c from being fused.
 */
#include <stdint.h>

typedef struct {
  void *state;
  uint64_t (*next_uint64)(void *state);
  uint32_t (*next_uint32)(void *state);
  double (*next_double)(void *state);
  uint64_t (*next_raw)(void *state);
} bitgen_t;

/* Uniform on [0, n), exactly: Lemire's multiply-and-reject ("Fast random integer generation in an
 * interval", 2019), which numpy also uses for bounded integers. */
static inline uint32_t below(bitgen_t *g, uint32_t n) {
  uint64_t product = (uint64_t)g->next_uint32(g->state) * n;
  uint32_t low = (uint32_t)product;
  if (low < n) {
    const uint32_t threshold = -n % n;
    while (low < threshold) {
      product = (uint64_t)g->next_uint32(g->state) * n;
      low = (uint32_t)product;
    }
  }
  return (uint32_t)(product >> 32);
}

/* out[r] = sum_j weights[j] * members[sigma_r(j)] for `rows` independent uniform permutations
 * sigma_r, j over the k weighted slots (k <= n < 2^32). Each row is a partial Fisher-Yates
 * shuffle of `members` in place: slot j takes a uniform pick among the members not yet placed.
 * That is uniform whatever order `members` starts in, so each row starts from where the last
 * left off and `members` ends as a permutation of itself. */
void arcal_slot_sums(bitgen_t *g, double *members, int64_t n, const double *weights, int64_t k,
                     int64_t rows, double *out) {
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0.0;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t pick = j + below(g, (uint32_t)(n - j));
      const double value = members[pick];
      members[pick] = members[j];
      members[j] = value;
      sum += weights[j] * value;
    }
    out[r] = sum;
  }
}
