/* vmath.h — float maths that vectorises: branch-free inline versions of the
 * libm functions the kernels call per element.
 *
 * expf and erff from libm are calls the compiler cannot put inside a vector
 * loop, so a GELU or softmax loop runs one element at a time. These are
 * straight-line code (clamps, a polynomial, integer bit tricks), which
 * `#pragma omp simd` loops in *_kern.c files turn into AVX2/AVX-512 code.
 * Accuracy is stated per function and checked against double precision in
 * tests/test_vmath.c. */
#ifndef AFLO_VMATH_H
#define AFLO_VMATH_H

#include <stdint.h>
#include <string.h>

/* e^x within 2 ulp for x in [-87.3, 88.7]; below, 0 (flush, as softmax
 * wants for masked scores); above, clamped to e^88.7. Range reduction
 * x = n ln2 + r, |r| <= ln2/2 with ln2 split in two (Cody-Waite), then a
 * degree-7 Taylor polynomial for e^r (truncation < 2^-27 there) and
 * 2^n built in the exponent bits. */
static inline float vm_expf(float x) {
    const float lo = -87.33f, hi = 88.37f; /* 2^n stays a normal float */
    float xc = x < lo ? lo : (x > hi ? hi : x);
    /* Round to nearest by adding 1.5 * 2^23: n is then the low mantissa
     * bits of t, read as an integer (no float-to-int conversion, which is
     * undefined for NaN and does not vectorise at every level). */
    const float magic = 12582912.0f;
    float t = xc * 1.44269504088896341f + magic;
    float nf = t - magic;
    int32_t tb, mb;
    memcpy(&tb, &t, sizeof tb);
    memcpy(&mb, &magic, sizeof mb);
    float r = xc - nf * 0.693145751953125f; /* ln2 high part, exact in float */
    r = r - nf * 1.428606820309417e-6f;     /* ln2 - high part */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = (int32_t)((uint32_t)(tb - mb + 127) << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = p * scale;
    return x < lo ? 0.0f : y;
}

#endif
