/* rng.h — deterministic random numbers for the engine.
 *
 * Two kinds: a sequential generator (xoshiro256**, seeded through splitmix64)
 * for weight initialisation and data shuffling, whose whole state is four
 * words so checkpoints can save it; and a stateless counter hash for dropout
 * masks, so a mask can be regenerated in backward instead of stored and does
 * not depend on how many threads produced it. */
#ifndef AFLO_RNG_H
#define AFLO_RNG_H

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

#endif
