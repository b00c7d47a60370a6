/* vmath.h — float maths that vectorises: branch-free inline versions of the
 * libm functions the kernels call per element.
 *
 * expf and erff from libm are calls the compiler cannot put inside a vector
 * loop, so a GELU or softmax loop runs one element at a time. These are
 * straight-line code (clamps, a polynomial, integer bit tricks), which
 * `#pragma omp simd` loops in *_kern.c files turn into AVX2/AVX-512 code.
 * Accuracy is stated per function and checked against double precision in
 * tests/test_vmath.c. They give the same bits at every vector level only
 * where a*b+c is not contracted into an FMA: gcc's ISO C mode does not;
 * clang does unless `#pragma STDC FP_CONTRACT OFF` comes before this
 * header (as in ops_kern.c). */
#ifndef AFLO_VMATH_H
#define AFLO_VMATH_H

#include <math.h>
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

/* erf(x) within 1.5 ulp for every float x (1.33 measured over every 7th
 * float of [-4.5, 4.5]; tests/test_vmath.c); exactly +-1 for |x| >= 4 (true erf rounds to +-1 from
 * |x| ~ 3.92), exactly 0 at 0, NaN for NaN. Both pieces are computed and
 * one is selected, so there is no branch:
 *   |x| < 1:  x + x * (P(x^2) - 1)         (P degree 6, rel. error 1.2e-9)
 *   |x| >= 1: 1 - e^(-x^2) * Q(1/|x|)      (Q degree 8, rel. error 6.5e-8 of
 *                                           erfc, i.e. < 1e-8 absolute)
 * Coefficients: near-minimax fits made by engine/model/fit_vm_erff.py. */
static inline float vm_erff(float x) {
    float a = fabsf(x);
    a = a > 4.0f ? 4.0f : a; /* NaN compares false and stays NaN */
    const float s = a * a;
    float p = 7.854221111e-05f;
    p = p * s - 8.010311292e-04f;
    p = p * s + 5.188342502e-03f;
    p = p * s - 2.685382090e-02f;
    p = p * s + 1.128358541e-01f;
    p = p * s - 3.761262586e-01f;
    p = p * s + 1.283791657e-01f; /* P's constant term minus 1 */
    /* a + a*(P - 1): the leading term exact, so P's float rounding shrinks */
    const float small = a + a * p;
    /* The tail's argument is clamped to [1, 4] so 1/a is always finite. */
    const float t = 1.0f / (a < 1.0f ? 1.0f : a);
    float q = -1.137580788e-02f;
    q = q * t + 3.800484166e-02f;
    q = q * t + 4.016421254e-03f;
    q = q * t - 2.190571308e-01f;
    q = q * t + 4.809308405e-01f;
    q = q * t - 4.646633471e-01f;
    q = q * t + 4.015869323e-02f;
    q = q * t + 5.593159519e-01f;
    q = q * t + 2.530853273e-04f;
    const float tail = 1.0f - vm_expf(-s) * q;
    return copysignf(a < 1.0f ? small : tail, x);
}

#endif
