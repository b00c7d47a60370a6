/* rng.h — deterministic random numbers for the engine.
 *
 * Two kinds: a sequential generator (xoshiro256**, seeded through splitmix64)
 * for weight initialisation and data shuffling, whose whole state is four
 * words so checkpoints can save it; and a stateless counter hash for dropout
 * masks, so a mask can be regenerated in backward instead of stored and does
 * not depend on how many threads produced it. */
#ifndef AFLO_RNG_H
#define AFLO_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} aflo_rng;

void rng_seed(aflo_rng *r, uint64_t seed);
uint64_t rng_next(aflo_rng *r);
/* Uniform in [0, 1) with 24 random bits (exactly representable in fp32). */
float rng_uniform(aflo_rng *r);
float rng_uniform_range(aflo_rng *r, float lo, float hi);
/* Standard normal (Box-Muller). */
float rng_normal(aflo_rng *r);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t rng_below(aflo_rng *r, uint64_t n);

/* Stateless: a well-mixed 64-bit hash of (key, counter) — splitmix64's
 * finaliser of key ^ counter*K. Inline so that vectorised kernels (dropout
 * masks inside *_kern.c loops) hash in registers instead of calling out. */
static inline uint64_t rng_hash(uint64_t key, uint64_t counter) {
    uint64_t z = key ^ (counter * 0xd1342543de82ef95ULL);
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Dropout with probability p from the counter hash, shared by every kernel
 * that drops: element i is kept when u(i) = (rng_hash(..) >> 40) * 2^-24 >= p,
 * i.e. when rng_hash(..) >> 40 >= rng_drop_threshold(p) = ceil(p * 2^24)
 * (exact in double); p >= 1 gives 2^24, above every 24-bit value. Kept
 * elements are scaled by rng_drop_scale(p) = 1/(1-p) (0 when p >= 1). */
static inline int64_t rng_drop_threshold(float p) {
    double t = ceil((double)p * 16777216.0);
    return t > 16777216.0 ? 16777216 : (int64_t)t;
}
static inline float rng_drop_scale(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }

#endif
