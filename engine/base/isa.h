/* isa.h — one binary, kernels for the CPU it runs on.
 *
 * Hot kernels live in multi-ISA sources: files named *_kern.c, which the
 * Makefile compiles once per level below, each time with that level's -march
 * and -DAFLO_ISA=<level name>. Inside such a file every function is static
 * except one table of function pointers, named with ISA_TABLE:
 *
 *     const ops_kernels ISA_TABLE(ops_kernels) = {.gelu_forward = gelu_fwd, ...};
 *
 * which becomes ops_kernels_base, ops_kernels_avx2 and ops_kernels_avx512 in
 * the three objects. The module's ordinary .c file holds
 *
 *     static const ops_kernels *const variants[ISA_COUNT] =
 *         {&ops_kernels_base, &ops_kernels_avx2, &ops_kernels_avx512};
 *
 * and calls variants[isa_level()]->gelu_forward(...). Compilers vectorise
 * the same plain C for each level's vector width, so there is one source of
 * truth per kernel and no intrinsics.
 *
 * The level is chosen once, on first use: the best the CPU supports, or the
 * one AFLORAD_ISA names (base, avx2, avx512) when the CPU supports it. Tests
 * switch levels with isa_select to run every supported variant. Results can
 * differ between levels in the last bits (vector width changes summation
 * order, FMA contracts); for one level and thread count they are
 * deterministic. */
#ifndef AFLO_ISA_H
#define AFLO_ISA_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    ISA_BASE = 0, /* x86-64-v2: SSE4.2, what every x86-64 server has */
    ISA_AVX2,     /* x86-64-v3: AVX2 + FMA */
    ISA_AVX512,   /* x86-64-v4: AVX-512 F/BW/DQ/VL, 512-bit vectors preferred */
    ISA_COUNT
} aflo_isa;

/* "base", "avx2", "avx512". */
const char *isa_name(aflo_isa isa);
/* Parses a level name; -1 when unknown. */
int isa_parse(const char *name, aflo_isa *out);
/* Whether this CPU (and OS) can run the level. */
bool isa_supported(aflo_isa isa);
/* The best level this CPU supports. */
aflo_isa isa_best(void);
/* The level the kernels run at (chosen on first call, see above). */
aflo_isa isa_level(void);
/* Runs the kernels at `isa` from now on; -1 with a message when the CPU
 * cannot. Process-wide: for start-up and tests, not while kernels run. */
int isa_select(aflo_isa isa, char *err, size_t errlen);
/* One line for the start-up log: the level, why it was chosen (CPU, or
 * AFLORAD_ISA, or AFLORAD_ISA refused and why). */
const char *isa_describe(void);

#ifdef AFLO_ISA
#define ISA_PASTE2(a, b) a##_##b
#define ISA_PASTE(a, b) ISA_PASTE2(a, b)
/* The exported table of a multi-ISA source, suffixed with its level. */
#define ISA_TABLE(name) ISA_PASTE(name, AFLO_ISA)
#endif

#endif
