/* half.c — bf16 / f16 to f32 widening (half.h).
 *
 * BF16 is the top half of a float32: a shift. F16 is done without branches
 * so the loop vectorises: the exponent is rebiased by adding
 * (127 - 15) << 23 to the shifted bits (normals), an all-ones exponent
 * becomes float32's all-ones (inf, NaN), and a zero exponent takes the
 * mantissa as an integer times 2^-24 (zero and subnormals, exact since the
 * mantissa has 10 bits), then the sign bit goes on top. */
#include "model/half.h"

#include <string.h>

#include "model/gemm.h"

/* Below this many values one thread widens: a fork/join costs a few
 * microseconds, a 64 K-value row block about as much. */
#define HALF_PARALLEL_MIN 65536

static inline float bits_float(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static inline uint32_t float_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

static inline float bf16_one(uint16_t h) { return bits_float((uint32_t)h << 16); }

static inline float f16_one(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t em = h & 0x7FFFu, exp = em >> 10, mant = em & 0x3FFu;
    uint32_t normal = (em << 13) + ((uint32_t)(127 - 15) << 23);
    uint32_t special = (em << 13) | 0x7F800000u; /* exponent 31: inf or NaN */
    uint32_t sub = float_bits((float)mant * 0x1p-24f);
    uint32_t bits = exp == 0 ? sub : exp == 0x1Fu ? special : normal;
    return bits_float(bits | sign);
}

float half_one_to_f32(uint16_t h, aflo_half_kind kind) {
    return kind == HALF_F16 ? f16_one(h) : bf16_one(h);
}

void half_to_f32(float *restrict dst, const uint16_t *restrict src, size_t n, aflo_half_kind kind) {
    int T = n >= HALF_PARALLEL_MIN ? engine_threads() : 1;
    (void)T; /* a build without OpenMP (make test-tsan) ignores the pragmas */
    if (kind == HALF_F16) {
#pragma omp parallel for simd schedule(static) num_threads(T) if (T > 1)
        for (size_t i = 0; i < n; i++) dst[i] = f16_one(src[i]);
    } else {
#pragma omp parallel for simd schedule(static) num_threads(T) if (T > 1)
        for (size_t i = 0; i < n; i++) dst[i] = bf16_one(src[i]);
    }
}
