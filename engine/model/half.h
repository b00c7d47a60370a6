/* half.h — 16-bit floats (bfloat16 and IEEE half) widened to float32.
 *
 * Frozen base weights stored as BF16 or F16 in a safetensors file stay
 * 16-bit in memory (model.h: aflo_param.half) and are widened just before
 * each product that reads them, into one scratch buffer per model. The
 * widening is exact (every 16-bit value is a float32), so a model kept
 * 16-bit computes with the very floats a model widened at load would.
 *
 * Values follow IEEE 754: F16 subnormals become the float32 normals they
 * equal, infinities stay infinite, NaNs stay NaN with their payload (shifted
 * into the top of the float32 mantissa) and sign. */
#ifndef AFLO_HALF_H
#define AFLO_HALF_H

#include <stddef.h>
#include <stdint.h>

typedef enum { HALF_NONE, HALF_BF16, HALF_F16 } aflo_half_kind;

/* dst[i] = src[i] widened, for n values; OpenMP threads when n is large
 * (each value independent: the result does not depend on the team). */
void half_to_f32(float *dst, const uint16_t *src, size_t n, aflo_half_kind kind);

/* One value, for gathers (an embedding row) and tests. */
float half_one_to_f32(uint16_t h, aflo_half_kind kind);

#endif
